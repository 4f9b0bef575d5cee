/* Anonymous-inode files: tscriu makes eventfds, signalfds, timerfds, epolls
 * and inotify instances on restore and hands them to the task; on dump it
 * looks at a timerfd through timerfd_gettime and at the inodes inotify
 * watches through open_by_handle_at (its fdinfo names them by file handle). */
#include "bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#ifndef INOTIFY_IOC_SETNEXTWD
#define INOTIFY_IOC_SETNEXTWD _IOW('I', 0, int32_t)
#endif
/* MAX_HANDLE_SZ of the kernel: struct file_handle's f_handle is at most this long. */
#define HANDLE_MAX 128

/* eventfd(initval, flags): initval is an unsigned int (more is written afterwards). */
static napi_value eventfd_(napi_env env, napi_callback_info info)
{
	const char *fn = "eventfd";
	napi_value argv[2];
	uint32_t initval;
	int32_t flags;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_uint32(env, argv[0], &initval, fn, "initval must be a uint32") ||
	    !bridge_arg_int32(env, argv[1], &flags, fn, "flags must be an int32"))
		return NULL;
	int fd = eventfd(initval, flags);
	if (fd < 0)
		return bridge_throw_errno(env, "eventfd", errno, 0, NULL);
	return bridge_make_i64(env, fd);
}

/* signalfd4(-1, mask, 8, flags): the kernel's 64-bit mask, bit (n-1) for signal n. */
static napi_value signalfd_(napi_env env, napi_callback_info info)
{
	const char *fn = "signalfd";
	napi_value argv[2];
	uint64_t mask;
	int32_t flags;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_u64(env, argv[0], &mask, fn, "mask must be a non-negative integer") ||
	    !bridge_arg_int32(env, argv[1], &flags, fn, "flags must be an int32"))
		return NULL;
	long fd = syscall(SYS_signalfd4, -1, &mask, sizeof(mask), flags);
	if (fd < 0)
		return bridge_throw_errno(env, "signalfd4", errno, 0, NULL);
	return bridge_make_i64(env, fd);
}

static napi_value timerfd_create_(napi_env env, napi_callback_info info)
{
	const char *fn = "timerfdCreate";
	napi_value argv[2];
	int32_t clockid, flags;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_int32(env, argv[0], &clockid, fn, "clockId must be an int32") ||
	    !bridge_arg_int32(env, argv[1], &flags, fn, "flags must be an int32"))
		return NULL;
	int fd = timerfd_create(clockid, flags);
	if (fd < 0)
		return bridge_throw_errno(env, "timerfd_create", errno, 0, NULL);
	return bridge_make_i64(env, fd);
}

static napi_value ns_of(napi_env env, const struct timespec *ts)
{
	napi_value v;
	napi_create_bigint_uint64(env, (uint64_t)ts->tv_sec * 1000000000ULL + (uint64_t)ts->tv_nsec, &v);
	return v;
}

/* timerfd_gettime: the time to the next expiry and the interval, in ns. */
static napi_value timerfd_gettime_(napi_env env, napi_callback_info info)
{
	const char *fn = "timerfdGettime";
	napi_value argv[1];
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32"))
		return NULL;
	struct itimerspec its;
	if (timerfd_gettime(fd, &its) < 0)
		return bridge_throw_errno(env, "timerfd_gettime", errno, 0, NULL);
	napi_value r;
	napi_create_object(env, &r);
	napi_set_named_property(env, r, "valueNs", ns_of(env, &its.it_value));
	napi_set_named_property(env, r, "intervalNs", ns_of(env, &its.it_interval));
	return r;
}

static napi_value epoll_create1_(napi_env env, napi_callback_info info)
{
	const char *fn = "epollCreate1";
	napi_value argv[1];
	int32_t flags;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_int32(env, argv[0], &flags, fn, "flags must be an int32"))
		return NULL;
	int fd = epoll_create1(flags);
	if (fd < 0)
		return bridge_throw_errno(env, "epoll_create1", errno, 0, NULL);
	return bridge_make_i64(env, fd);
}

static napi_value inotify_init1_(napi_env env, napi_callback_info info)
{
	const char *fn = "inotifyInit1";
	napi_value argv[1];
	int32_t flags;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_int32(env, argv[0], &flags, fn, "flags must be an int32"))
		return NULL;
	int fd = inotify_init1(flags);
	if (fd < 0)
		return bridge_throw_errno(env, "inotify_init1", errno, 0, NULL);
	return bridge_make_i64(env, fd);
}

static napi_value inotify_add_watch_(napi_env env, napi_callback_info info)
{
	const char *fn = "inotifyAddWatch";
	napi_value argv[3];
	int32_t fd;
	uint32_t mask;
	char *path = NULL;
	if (!bridge_get_args(env, info, 3, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_string(env, argv[1], &path, fn, "path must be a string"))
		return NULL;
	napi_value ret = NULL;
	if (!bridge_arg_uint32(env, argv[2], &mask, fn, "mask must be a uint32"))
		goto out;
	int wd = inotify_add_watch(fd, path, mask);
	if (wd < 0)
		bridge_throw_errno(env, "inotify_add_watch", errno, 0, path);
	else
		ret = bridge_make_i64(env, wd);
out:
	free(path);
	return ret;
}

static napi_value inotify_rm_watch_(napi_env env, napi_callback_info info)
{
	const char *fn = "inotifyRmWatch";
	napi_value argv[2];
	int32_t fd, wd;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_int32(env, argv[1], &wd, fn, "wd must be an int32"))
		return NULL;
	if (inotify_rm_watch(fd, wd) < 0)
		return bridge_throw_errno(env, "inotify_rm_watch", errno, 0, NULL);
	return NULL;
}

/* INOTIFY_IOC_SETNEXTWD (CONFIG_CHECKPOINT_RESTORE): the next watch added gets
 * descriptor `wd` if it is free. ENOTTY on kernels without it. */
static napi_value inotify_set_next_wd(napi_env env, napi_callback_info info)
{
	const char *fn = "inotifySetNextWd";
	napi_value argv[2];
	int32_t fd, wd;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_int32(env, argv[1], &wd, fn, "wd must be an int32"))
		return NULL;
	if (ioctl(fd, INOTIFY_IOC_SETNEXTWD, wd) < 0)
		return bridge_throw_errno(env, "ioctl(INOTIFY_IOC_SETNEXTWD)", errno, 0, NULL);
	return NULL;
}

/* fanotify_init(flags, eventFlags); needs CAP_SYS_ADMIN for most classes. */
static napi_value fanotify_init_(napi_env env, napi_callback_info info)
{
	const char *fn = "fanotifyInit";
	napi_value argv[2];
	uint32_t flags, event_flags;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_uint32(env, argv[0], &flags, fn, "flags must be a uint32") ||
	    !bridge_arg_uint32(env, argv[1], &event_flags, fn, "eventFlags must be a uint32"))
		return NULL;
	int fd = fanotify_init(flags, event_flags);
	if (fd < 0)
		return bridge_throw_errno(env, "fanotify_init", errno, 0, NULL);
	return bridge_make_i64(env, fd);
}

/* fanotify_mark(fd, flags, mask, AT_FDCWD, path). */
static napi_value fanotify_mark_(napi_env env, napi_callback_info info)
{
	const char *fn = "fanotifyMark";
	napi_value argv[4];
	int32_t fd;
	uint32_t flags, mask;
	char *path = NULL;
	if (!bridge_get_args(env, info, 4, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_uint32(env, argv[1], &flags, fn, "flags must be a uint32") ||
	    !bridge_arg_uint32(env, argv[2], &mask, fn, "mask must be a uint32") ||
	    !bridge_arg_string(env, argv[3], &path, fn, "path must be a string"))
		return NULL;
	if (fanotify_mark(fd, flags, mask, AT_FDCWD, path) < 0)
		bridge_throw_errno(env, "fanotify_mark", errno, 0, path);
	free(path);
	return NULL;
}

/* open_by_handle_at(mountFd, {bytes, type, handle}, flags); needs CAP_DAC_READ_SEARCH. */
static napi_value open_by_handle_at_(napi_env env, napi_callback_info info)
{
	const char *fn = "openByHandleAt";
	napi_value argv[4];
	int32_t mount_fd, type, flags;
	uint8_t *bytes;
	size_t len;
	if (!bridge_get_args(env, info, 4, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &mount_fd, fn, "mountFd must be a non-negative int32") ||
	    !bridge_arg_int32(env, argv[1], &type, fn, "type must be an int32") ||
	    !bridge_arg_bytes(env, argv[2], &bytes, &len, fn, "handle must be a Buffer or TypedArray") ||
	    !bridge_arg_int32(env, argv[3], &flags, fn, "flags must be an int32"))
		return NULL;
	if (len == 0 || len > HANDLE_MAX)
		return bridge_throw_arg(env, fn, "handle must hold 1..128 bytes");
	struct {
		struct file_handle fh;
		unsigned char data[HANDLE_MAX];
	} h;
	h.fh.handle_bytes = (unsigned int)len;
	h.fh.handle_type = type;
	memcpy(h.fh.f_handle, bytes, len);
	int fd = open_by_handle_at(mount_fd, &h.fh, flags);
	if (fd < 0)
		return bridge_throw_errno(env, "open_by_handle_at", errno, 0, NULL);
	return bridge_make_i64(env, fd);
}

void bridge_init_anonfd(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "eventfd", eventfd_ },
		{ "signalfd", signalfd_ },
		{ "timerfdCreate", timerfd_create_ },
		{ "timerfdGettime", timerfd_gettime_ },
		{ "epollCreate1", epoll_create1_ },
		{ "inotifyInit1", inotify_init1_ },
		{ "inotifyAddWatch", inotify_add_watch_ },
		{ "inotifyRmWatch", inotify_rm_watch_ },
		{ "inotifySetNextWd", inotify_set_next_wd },
		{ "openByHandleAt", open_by_handle_at_ },
		{ "fanotifyInit", fanotify_init_ },
		{ "fanotifyMark", fanotify_mark_ },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
