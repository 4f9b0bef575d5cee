/* Write tracking between the passes of an incremental dump, on kernels without the
 * soft-dirty bit: a userfaultfd of the task (made in it, taken with pidfd_getfd) in
 * asynchronous write-protect mode (UFFD_FEATURE_WP_ASYNC, Linux >= 6.7). Its writable
 * private anonymous VMAs are registered and their pages protected while the task is
 * frozen; a write then clears a page's protection in the kernel without a fault to
 * serve, and PAGEMAP_SCAN reports the page as written at the next pass. A protected page
 * the task never wrote is the page of that earlier pass. */
#include "bridge.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#ifndef UFFD_FEATURE_WP_ASYNC
/* Debian 12's linux-libc-dev (6.1) predates it: the 6.7 uapi value. */
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#define RANGES "ranges must be a BigUint64Array of (start, length) pairs"

/* uffdTrackStart(fd): the UFFDIO_API handshake with asynchronous write-protect. */
static napi_value uffd_track_start(napi_env env, napi_callback_info info)
{
	const char *fn = "uffdTrackStart";
	napi_value argv[1];
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a userfaultfd"))
		return NULL;
	struct uffdio_api api;
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	api.features = UFFD_FEATURE_WP_ASYNC;
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return bridge_throw_errno(env, "ioctl(UFFDIO_API, UFFD_FEATURE_WP_ASYNC)", errno, 0, NULL);
	return NULL;
}

/* uffdTrackRegister(fd, ranges): UFFDIO_REGISTER (MODE_WP) of each range; an Int32Array
 * of errnos, 0 where it worked (EBUSY: the range has a userfaultfd of someone else's). */
static napi_value uffd_track_register(napi_env env, napi_callback_info info)
{
	const char *fn = "uffdTrackRegister";
	napi_value argv[2];
	int32_t fd;
	uint64_t *r;
	size_t n;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a userfaultfd") ||
	    !bridge_arg_u64s(env, argv[1], &r, &n, 2, fn, RANGES))
		return NULL;
	napi_value ab, out;
	void *mem;
	if (napi_create_arraybuffer(env, n * 4, &mem, &ab) != napi_ok ||
	    napi_create_typedarray(env, napi_int32_array, n, ab, 0, &out) != napi_ok)
		return NULL;
	int32_t *errs = mem;
	for (size_t i = 0; i < n; i++) {
		struct uffdio_register rg;
		memset(&rg, 0, sizeof(rg));
		rg.range.start = r[2 * i];
		rg.range.len = r[2 * i + 1];
		rg.mode = UFFDIO_REGISTER_MODE_WP;
		errs[i] = ioctl(fd, UFFDIO_REGISTER, &rg) < 0 ? errno : 0;
	}
	return out;
}

/* uffdTrackProtect(fd, ranges, on): UFFDIO_WRITEPROTECT of each range, protecting (on)
 * or not. */
static napi_value uffd_track_protect(napi_env env, napi_callback_info info)
{
	const char *fn = "uffdTrackProtect";
	napi_value argv[3];
	int32_t fd;
	uint64_t *r;
	size_t n;
	bool on;
	if (!bridge_get_args(env, info, 3, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a userfaultfd") ||
	    !bridge_arg_u64s(env, argv[1], &r, &n, 2, fn, RANGES))
		return NULL;
	if (napi_get_value_bool(env, argv[2], &on) != napi_ok)
		return bridge_throw_arg(env, fn, "on must be a boolean");
	for (size_t i = 0; i < n; i++) {
		struct uffdio_writeprotect wp = { { r[2 * i], r[2 * i + 1] }, on ? UFFDIO_WRITEPROTECT_MODE_WP : 0 };
		while (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) < 0) {
			if (errno == EAGAIN)
				continue;
			char msg[128];
			snprintf(msg, sizeof(msg), "ioctl(UFFDIO_WRITEPROTECT) of 0x%" PRIx64 "+0x%" PRIx64, r[2 * i],
				 r[2 * i + 1]);
			return bridge_throw_errno(env, msg, errno, 0, NULL);
		}
	}
	return NULL;
}

void bridge_init_uffd_track(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "uffdTrackStart", uffd_track_start },
		{ "uffdTrackRegister", uffd_track_register },
		{ "uffdTrackProtect", uffd_track_protect },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
