/* The few calls a dump needs beyond ptrace and memory: TLS descriptors of a
 * stopped thread, kcmp to tell shared kernel objects apart, the owner of an
 * open file, the robust futex list, clocks for the time namespace and seccomp
 * filters. (A terminal's settings: tty.c.) */
#include "bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef PTRACE_GET_THREAD_AREA
#define PTRACE_GET_THREAD_AREA 25
#endif
#ifndef PTRACE_SECCOMP_GET_FILTER
#define PTRACE_SECCOMP_GET_FILTER 0x420c
#endif
/* linux/kcmp.h's KCMP_EPOLL_TFD */
#define KCMP_EPOLL_TFD_ 7
#ifndef F_GETOWNER_UIDS
#define F_GETOWNER_UIDS 17
#endif

/* PTRACE_GET_THREAD_AREA: the 16-byte struct user_desc of GDT entry `index`. */
static napi_value get_thread_area(napi_env env, napi_callback_info info)
{
	const char *fn = "getThreadArea";
	napi_value argv[2];
	int32_t pid;
	uint32_t index;
	if (!bridge_get_args(env, info, 2, argv, fn) || !bridge_arg_pid(env, argv[0], &pid, fn) ||
	    !bridge_arg_uint32(env, argv[1], &index, fn, "index must be a GDT entry number (uint32)"))
		return NULL;
	uint32_t desc[4] = { 0, 0, 0, 0 };
	if (ptrace(PTRACE_GET_THREAD_AREA, pid, (void *)(uintptr_t)index, desc) < 0)
		return bridge_throw_errno(env, "ptrace(PTRACE_GET_THREAD_AREA)", errno, pid, NULL);
	napi_value r;
	napi_create_buffer_copy(env, sizeof(desc), desc, NULL, &r);
	return r;
}

/* kcmp(pid1, pid2, type, idx1, idx2): 0 same object, 1/2 ordered, 3 different. */
static napi_value kcmp_(napi_env env, napi_callback_info info)
{
	const char *fn = "kcmp";
	napi_value argv[5];
	int32_t pid1, pid2;
	uint32_t type;
	uint64_t idx1, idx2;
	if (!bridge_get_args(env, info, 5, argv, fn) || !bridge_arg_pid(env, argv[0], &pid1, fn) ||
	    !bridge_arg_pid(env, argv[1], &pid2, fn) ||
	    !bridge_arg_uint32(env, argv[2], &type, fn, "type must be a KCMP_* number") ||
	    !bridge_arg_u64(env, argv[3], &idx1, fn, "idx1 must be a non-negative integer") ||
	    !bridge_arg_u64(env, argv[4], &idx2, fn, "idx2 must be a non-negative integer"))
		return NULL;
	long r = syscall(SYS_kcmp, pid1, pid2, type, (unsigned long)idx1, (unsigned long)idx2);
	if (r < 0)
		return bridge_throw_errno(env, "kcmp", errno, pid1, NULL);
	return bridge_make_i64(env, r);
}

/* kcmp(pid1, pid2, KCMP_EPOLL_TFD, fd, &slot): whether pid1's fd is the file
 * that pid2's epoll `efd` watches as target `tfd` (the toff-th item of that
 * number). 0 when it is; errors (EBADF: no such fd, ENOENT: no such target)
 * are thrown. */
static napi_value kcmp_epoll_tfd(napi_env env, napi_callback_info info)
{
	const char *fn = "kcmpEpollTfd";
	napi_value argv[6];
	int32_t pid1, pid2;
	uint32_t fd, efd, tfd, toff;
	if (!bridge_get_args(env, info, 6, argv, fn) || !bridge_arg_pid(env, argv[0], &pid1, fn) ||
	    !bridge_arg_uint32(env, argv[1], &fd, fn, "fd must be a uint32") ||
	    !bridge_arg_pid(env, argv[2], &pid2, fn) ||
	    !bridge_arg_uint32(env, argv[3], &efd, fn, "efd must be a uint32") ||
	    !bridge_arg_uint32(env, argv[4], &tfd, fn, "tfd must be a uint32") ||
	    !bridge_arg_uint32(env, argv[5], &toff, fn, "toff must be a uint32"))
		return NULL;
	struct {
		uint32_t efd, tfd, toff;
	} slot = { efd, tfd, toff };
	long r = syscall(SYS_kcmp, pid1, pid2, KCMP_EPOLL_TFD_, (unsigned long)fd, (unsigned long)&slot);
	if (r < 0)
		return bridge_throw_errno(env, "kcmp", errno, pid1, NULL);
	return bridge_make_i64(env, r);
}

/* The owner of an open file description into out: F_GETOWN_EX's type and pid, F_GETSIG's
 * signal, F_GETOWNER_UIDS' uid and euid (a CONFIG_CHECKPOINT_RESTORE fcntl; zeros without
 * it). 0, or the errno of the call named in *call. */
int bridge_fd_owner(int fd, int32_t out[5], const char **call)
{
	struct f_owner_ex owner = { 0, 0 };
	if (fcntl(fd, F_GETOWN_EX, &owner) < 0)
		return *call = "fcntl(F_GETOWN_EX)", errno;
	int sig = fcntl(fd, F_GETSIG);
	if (sig < 0)
		return *call = "fcntl(F_GETSIG)", errno;
	uint32_t uids[2] = { 0, 0 };
	if (fcntl(fd, F_GETOWNER_UIDS, uids) < 0 && errno != EINVAL)
		return *call = "fcntl(F_GETOWNER_UIDS)", errno;
	int32_t v[5] = { owner.type, owner.pid, sig, (int32_t)uids[0], (int32_t)uids[1] };
	memcpy(out, v, sizeof(v));
	return 0;
}

/* fdOwner(fd, out): the owner of an open file description into out (an Int32Array of 5),
 * as bridge_fd_owner reads it. Into an array rather than an object made here: called for
 * every fd of a dump. */
static napi_value fd_owner(napi_env env, napi_callback_info info)
{
	const char *fn = "fdOwner";
	napi_value argv[2];
	int32_t fd;
	uint8_t *out;
	size_t len;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_bytes(env, argv[1], &out, &len, fn, "out must be an Int32Array of 5"))
		return NULL;
	if (len != 5 * sizeof(int32_t))
		return bridge_throw_arg(env, fn, "out must be an Int32Array of 5");
	int32_t v[5];
	const char *call = NULL;
	int err = bridge_fd_owner(fd, v, &call);
	if (err)
		return bridge_throw_errno(env, call, err, 0, NULL);
	memcpy(out, v, sizeof(v));
	return NULL;
}

static napi_value get_robust_list(napi_env env, napi_callback_info info)
{
	const char *fn = "getRobustList";
	napi_value argv[1];
	int32_t pid;
	if (!bridge_get_args(env, info, 1, argv, fn) || !bridge_arg_pid(env, argv[0], &pid, fn))
		return NULL;
	void *head = NULL;
	size_t len = 0;
	if (syscall(SYS_get_robust_list, pid, &head, &len) < 0)
		return bridge_throw_errno(env, "get_robust_list", errno, pid, NULL);
	napi_value r, v;
	napi_create_object(env, &r);
	napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)head, &v);
	napi_set_named_property(env, r, "head", v);
	bridge_set_u32(env, r, "len", (uint32_t)len);
	return r;
}

static napi_value clock_gettime_(napi_env env, napi_callback_info info)
{
	const char *fn = "clockGettime";
	napi_value argv[1];
	int32_t clk;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_int32(env, argv[0], &clk, fn, "clockId must be an int32"))
		return NULL;
	struct timespec ts;
	if (clock_gettime(clk, &ts) < 0)
		return bridge_throw_errno(env, "clock_gettime", errno, 0, NULL);
	napi_value r;
	napi_create_bigint_uint64(env, (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec, &r);
	return r;
}

/* PTRACE_SECCOMP_GET_FILTER: the BPF program of filter `index` (0 = the oldest, as the
 * kernel's get_nth_filter counts, though ptrace(2) says the newest) as bytes, or null
 * past the last one. */
static napi_value seccomp_get_filter(napi_env env, napi_callback_info info)
{
	const char *fn = "seccompGetFilter";
	napi_value argv[2];
	int32_t pid;
	uint32_t index;
	if (!bridge_get_args(env, info, 2, argv, fn) || !bridge_arg_pid(env, argv[0], &pid, fn) ||
	    !bridge_arg_uint32(env, argv[1], &index, fn, "index must be a uint32"))
		return NULL;
	long n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, (void *)(uintptr_t)index, NULL);
	if (n < 0) {
		if (errno == ENOENT) {
			napi_value r;
			napi_get_null(env, &r);
			return r;
		}
		return bridge_throw_errno(env, "ptrace(PTRACE_SECCOMP_GET_FILTER)", errno, pid, NULL);
	}
	struct sock_filter *prog = calloc((size_t)n + 1, sizeof(*prog));
	if (!prog)
		return bridge_throw_errno(env, "calloc", ENOMEM, pid, NULL);
	n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, (void *)(uintptr_t)index, prog);
	if (n < 0) {
		int err = errno;
		free(prog);
		return bridge_throw_errno(env, "ptrace(PTRACE_SECCOMP_GET_FILTER)", err, pid, NULL);
	}
	napi_value r;
	napi_create_buffer_copy(env, (size_t)n * sizeof(*prog), prog, NULL, &r);
	free(prog);
	return r;
}

void bridge_init_dumpsys(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "getThreadArea", get_thread_area },	    { "kcmp", kcmp_ },
		{ "kcmpEpollTfd", kcmp_epoll_tfd },	    { "fdOwner", fd_owner },
		{ "getRobustList", get_robust_list },	    { "clockGettime", clock_gettime_ },
		{ "seccompGetFilter", seccomp_get_filter },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
