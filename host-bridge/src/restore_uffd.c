/* Filling anonymous memory of the restored task through its userfaultfd.
 *
 * process_vm_writev into fresh anonymous memory faults every page in (the kernel
 * allocates a zeroed page) and then copies over it. UFFDIO_COPY allocates the page
 * and copies into it in one go, without the zeroing and the fault path: measured
 * here 0.23 s instead of 0.37 s for 1 GiB on two threads. The task makes the
 * userfaultfd (it belongs to the mm of its creator), tscriu takes a copy of it
 * with pidfd_getfd, registers the anonymous VMAs, copies straight from the mapped
 * pages file, and unregisters them again; the task is ptrace-stopped throughout,
 * so it never meets a missing page while they are registered. */
#include "restore.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define UFFD_STEP (64ULL << 20)

struct uworker {
	struct restore_job job; /* first: restore_share fills it */
	int uffd;
};

static void *ucopy(void *arg)
{
	struct uworker *w = arg;
	for (size_t i = 0; i < w->job.nsegs && !w->job.err; i++) {
		struct restore_seg *s = &w->job.segs[i];
		uint64_t done = 0;
		while (done < s->len) {
			uint64_t n = s->len - done < UFFD_STEP ? s->len - done : UFFD_STEP;
			struct uffdio_copy c;
			memset(&c, 0, sizeof(c));
			c.dst = s->addr + done;
			c.src = (uint64_t)(uintptr_t)(w->job.base + (s->off - w->job.base_off) + done);
			c.len = n;
			if (ioctl(w->uffd, UFFDIO_COPY, &c) < 0 && c.copy <= 0) {
				if (errno == EAGAIN && c.copy == -EAGAIN)
					continue;
				w->job.err = errno;
				w->job.err_addr = c.dst;
				return NULL;
			}
			uint64_t got = c.copy > 0 ? (uint64_t)c.copy : n;
			done += got;
			w->job.bytes += got;
		}
	}
	return NULL;
}

/* uffdRegister(fd, ranges, register, features): UFFDIO_API once (first call, with
 * `features`: a lazy restore asks for the fork, mremap, munmap and madvise events its
 * daemon needs), then UFFDIO_REGISTER (MISSING) or UFFDIO_UNREGISTER of each
 * (start, length). */
static napi_value uffd_register(napi_env env, napi_callback_info info)
{
	const char *fn = "uffdRegister";
	napi_value argv[5];
	int32_t fd;
	uint64_t *r, features = 0;
	size_t n;
	bool reg = false, handshake = true;
	if (!bridge_get_args_range(env, info, 3, 5, argv, NULL, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a userfaultfd") ||
	    !bridge_arg_u64s(env, argv[1], &r, &n, 2, fn, "ranges must be a BigUint64Array of (start, length) pairs") ||
	    napi_get_value_bool(env, argv[2], &reg) != napi_ok)
		return NULL;
	if (!bridge_is_nullish(env, argv[3]) &&
	    !bridge_arg_word(env, argv[3], &features, fn, "features must be UFFD_FEATURE_* bits"))
		return NULL;
	if (!bridge_is_nullish(env, argv[4]) && napi_get_value_bool(env, argv[4], &handshake) != napi_ok)
		return bridge_throw_arg(env, fn, "handshake must be a boolean");
	if (reg && handshake) {
		struct uffdio_api api;
		memset(&api, 0, sizeof(api));
		api.api = UFFD_API;
		api.features = features;
		if (ioctl(fd, UFFDIO_API, &api) < 0)
			return bridge_throw_errno(env, "ioctl(UFFDIO_API)", errno, 0, NULL);
	}
	for (size_t i = 0; i < n; i++) {
		struct uffdio_range range = { r[2 * i], r[2 * i + 1] };
		int rc;
		if (reg) {
			struct uffdio_register rg;
			memset(&rg, 0, sizeof(rg));
			rg.range = range;
			rg.mode = UFFDIO_REGISTER_MODE_MISSING;
			rc = ioctl(fd, UFFDIO_REGISTER, &rg);
		} else {
			rc = ioctl(fd, UFFDIO_UNREGISTER, &range);
		}
		if (rc < 0) {
			char what[96];
			snprintf(what, sizeof(what), "ioctl(%s) of 0x%" PRIx64 "+0x%" PRIx64,
				 reg ? "UFFDIO_REGISTER" : "UFFDIO_UNREGISTER", (uint64_t)range.start,
				 (uint64_t)range.len);
			return bridge_throw_errno(env, what, errno, 0, NULL);
		}
	}
	return NULL;
}

/* uffdCopy(fd, pagesFd, segments, threads): UFFDIO_COPY of (address, file offset,
 * length) triples from the mapped pages file, on several threads. */
static napi_value uffd_copy(napi_env env, napi_callback_info info)
{
	const char *fn = "uffdCopy";
	napi_value argv[4];
	int32_t fd, pfd;
	if (!bridge_get_args_range(env, info, 3, 4, argv, NULL, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a userfaultfd") ||
	    !bridge_arg_fd(env, argv[1], &pfd, fn, "pagesFd must be an open file descriptor"))
		return NULL;
	napi_value res;
	struct restore_fill f;
	if (!restore_fill_open(env, fn, argv[2], argv[3], pfd, true, 0, &f))
		return NULL;
	if (f.nsegs == 0) {
		napi_create_double(env, 0, &res);
		return res;
	}
	struct uworker w[RESTORE_MAX_THREADS];
	memset(w, 0, sizeof(w));
	uint32_t nw = restore_share(&f, w, sizeof(w[0]));
	for (uint32_t t = 0; t < nw; t++)
		w[t].uffd = fd;
	restore_run_workers(w, sizeof(w[0]), nw, ucopy);
	restore_fill_close(&f);
	uint64_t bytes = 0;
	for (uint32_t t = 0; t < nw; t++) {
		bytes += w[t].job.bytes;
		if (w[t].job.err) {
			char what[96];
			snprintf(what, sizeof(what), "ioctl(UFFDIO_COPY) at 0x%" PRIx64, w[t].job.err_addr);
			return bridge_throw_errno(env, what, w[t].job.err, 0, NULL);
		}
	}
	napi_create_double(env, (double)bytes, &res);
	return res;
}

void bridge_init_restore_uffd(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "uffdRegister", uffd_register },
		{ "uffdCopy", uffd_copy },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
