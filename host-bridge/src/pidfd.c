/* Getting at another task's files: pidfd_open + pidfd_getfd give tscriu its own
 * copy of any fd of the target (same open file description), and the pipe
 * calls here let it read a pipe's contents without consuming them: tee() the
 * pipe into a fresh pipe and read that. */
#include "bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <unistd.h>

static napi_value make_int(napi_env env, int64_t v)
{
	return bridge_make_i64(env, v);
}

/* The pid a pidfd refers to, from its fdinfo (glibc 2.36 has no
 * pidfd_getpid); 0 when unknown, -1 when the task has exited. */
static int pidfd_pid(int pidfd)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
	FILE *f = fopen(path, "re");
	int pid = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pid: %d", &pid) == 1)
			break;
	fclose(f);
	return pid;
}

static napi_value pidfd_open_(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	int32_t pid;
	uint32_t flags = 0;
	if (!bridge_get_args_range(env, info, 1, 2, argv, NULL, "pidfdOpen") ||
	    !bridge_arg_pid(env, argv[0], &pid, "pidfdOpen"))
		return NULL;
	if (!bridge_is_nullish(env, argv[1]) &&
	    !bridge_arg_uint32(env, argv[1], &flags, "pidfdOpen",
			       "flags must be a uint32 (PIDFD_NONBLOCK, PIDFD_THREAD)"))
		return NULL;
	int fd = pidfd_open(pid, flags);
	if (fd < 0)
		return bridge_throw_errno(env, "pidfd_open", errno, pid, NULL);
	return make_int(env, fd);
}

static napi_value pidfd_getfd_(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	int32_t pidfd, target;
	if (!bridge_get_args(env, info, 2, argv, "pidfdGetfd") ||
	    !bridge_arg_fd(env, argv[0], &pidfd, "pidfdGetfd", "pidfd must be a non-negative int32") ||
	    !bridge_arg_fd(env, argv[1], &target, "pidfdGetfd", "targetFd must be a non-negative int32"))
		return NULL;
	/* The new fd is always O_CLOEXEC. */
	int fd = pidfd_getfd(pidfd, target, 0);
	if (fd < 0) {
		int err = errno;
		/* Name the target task in the error, when the kernel can tell it. */
		int pid = pidfd_pid(pidfd);
		return bridge_throw_errno(env, "pidfd_getfd", err, pid > 0 ? pid : 0, NULL);
	}
	return make_int(env, fd);
}

static napi_value pidfd_send_signal_(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	int32_t pidfd, sig;
	if (!bridge_get_args(env, info, 2, argv, "pidfdSendSignal") ||
	    !bridge_arg_fd(env, argv[0], &pidfd, "pidfdSendSignal", "pidfd must be a non-negative int32") ||
	    !bridge_arg_int32(env, argv[1], &sig, "pidfdSendSignal", "signal must be an int32"))
		return NULL;
	if (pidfd_send_signal(pidfd, sig, NULL, 0) < 0) {
		int err = errno;
		int pid = pidfd_pid(pidfd);
		return bridge_throw_errno(env, "pidfd_send_signal", err, pid > 0 ? pid : 0, NULL);
	}
	return NULL;
}

static napi_value close_(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, "close") ||
	    !bridge_arg_fd(env, argv[0], &fd, "close", "fd must be a non-negative int32"))
		return NULL;
	/* Linux frees the fd even when close reports EINTR: never retry. */
	if (close(fd) < 0 && errno != EINTR)
		return bridge_throw_errno(env, "close", errno, 0, NULL);
	return NULL;
}

static napi_value pipe2_(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	uint32_t flags = O_CLOEXEC;
	if (!bridge_get_args_range(env, info, 0, 1, argv, NULL, "pipe2"))
		return NULL;
	if (!bridge_is_nullish(env, argv[0]) &&
	    !bridge_arg_uint32(env, argv[0], &flags, "pipe2",
			       "flags must be a uint32 (O_CLOEXEC, O_NONBLOCK, O_DIRECT)"))
		return NULL;
	int fds[2];
	if (pipe2(fds, (int)flags) < 0)
		return bridge_throw_errno(env, "pipe2", errno, 0, NULL);
	napi_value arr;
	napi_create_array_with_length(env, 2, &arr);
	napi_set_element(env, arr, 0, make_int(env, fds[0]));
	napi_set_element(env, arr, 1, make_int(env, fds[1]));
	return arr;
}

/* Length argument of tee/splice: the kernel caps it at the pipe size anyway. */
static bool arg_len(napi_env env, napi_value v, size_t *out, const char *fn)
{
	uint64_t len;
	if (!bridge_arg_u64(env, v, &len, fn, "length must be a non-negative integer"))
		return false;
	*out = len > (uint64_t)SSIZE_MAX ? (size_t)SSIZE_MAX : (size_t)len;
	return true;
}

static napi_value tee_(napi_env env, napi_callback_info info)
{
	napi_value argv[4];
	int32_t in, out;
	uint32_t flags = 0;
	size_t len;
	if (!bridge_get_args_range(env, info, 3, 4, argv, NULL, "tee") ||
	    !bridge_arg_fd(env, argv[0], &in, "tee", "fdIn must be a non-negative int32") ||
	    !bridge_arg_fd(env, argv[1], &out, "tee", "fdOut must be a non-negative int32") ||
	    !arg_len(env, argv[2], &len, "tee"))
		return NULL;
	if (!bridge_is_nullish(env, argv[3]) &&
	    !bridge_arg_uint32(env, argv[3], &flags, "tee", "flags must be a uint32 (SPLICE_F_*)"))
		return NULL;
	ssize_t r;
	do
		r = tee(in, out, len, flags);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		/* An empty pipe with SPLICE_F_NONBLOCK is not an error here. */
		if (errno == EAGAIN)
			return make_int(env, 0);
		return bridge_throw_errno(env, "tee", errno, 0, NULL);
	}
	return make_int(env, r);
}

/* splice(fdIn, offIn, fdOut, offOut, length, flags); offsets null for pipes. */
static napi_value splice_(napi_env env, napi_callback_info info)
{
	napi_value argv[6];
	int32_t in, out;
	uint32_t flags = 0;
	size_t len;
	uint64_t oin = 0, oout = 0;
	bool has_oin, has_oout;
	if (!bridge_get_args_range(env, info, 5, 6, argv, NULL, "splice") ||
	    !bridge_arg_fd(env, argv[0], &in, "splice", "fdIn must be a non-negative int32") ||
	    !bridge_arg_fd(env, argv[2], &out, "splice", "fdOut must be a non-negative int32") ||
	    !arg_len(env, argv[4], &len, "splice"))
		return NULL;
	has_oin = !bridge_is_nullish(env, argv[1]);
	has_oout = !bridge_is_nullish(env, argv[3]);
	if ((has_oin &&
	     !bridge_arg_u64(env, argv[1], &oin, "splice", "offIn must be null or a non-negative integer")) ||
	    (has_oout &&
	     !bridge_arg_u64(env, argv[3], &oout, "splice", "offOut must be null or a non-negative integer")))
		return NULL;
	if (!bridge_is_nullish(env, argv[5]) &&
	    !bridge_arg_uint32(env, argv[5], &flags, "splice", "flags must be a uint32 (SPLICE_F_*)"))
		return NULL;
	loff_t lin = (loff_t)oin, lout = (loff_t)oout;
	ssize_t r;
	do
		r = splice(in, has_oin ? &lin : NULL, out, has_oout ? &lout : NULL, len, flags);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		if (errno == EAGAIN)
			return make_int(env, 0);
		return bridge_throw_errno(env, "splice", errno, 0, NULL);
	}
	return make_int(env, r);
}

/* fcntl with an int argument or none: F_GETFD, F_GETFL, F_SETFL, F_GETPIPE_SZ,
 * F_SETPIPE_SZ, F_GET_SEALS, F_DUPFD_CLOEXEC, ... (never a pointer argument). */
static napi_value fcntl_(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	int32_t fd, cmd, arg = 0;
	if (!bridge_get_args_range(env, info, 2, 3, argv, NULL, "fcntl") ||
	    !bridge_arg_fd(env, argv[0], &fd, "fcntl", "fd must be a non-negative int32") ||
	    !bridge_arg_int32(env, argv[1], &cmd, "fcntl", "cmd must be an int32"))
		return NULL;
	if (!bridge_is_nullish(env, argv[2]) && !bridge_arg_int32(env, argv[2], &arg, "fcntl", "arg must be an int32"))
		return NULL;
	switch (cmd) {
	case F_GETLK:
	case F_SETLK:
	case F_SETLKW:
	case F_OFD_GETLK:
	case F_OFD_SETLK:
	case F_OFD_SETLKW:
	case F_GETOWN_EX:
	case F_SETOWN_EX:
		return bridge_throw_arg(env, "fcntl", "commands with a pointer argument are not supported");
	default:
		break;
	}
	int r = fcntl(fd, cmd, arg);
	if (r < 0)
		return bridge_throw_errno(env, "fcntl", errno, 0, NULL);
	return make_int(env, r);
}

/* ioctl(fd, FIONREAD): the bytes queued in a pipe, socket, tty, inotify fd. */
static napi_value fionread(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, "fionread") ||
	    !bridge_arg_fd(env, argv[0], &fd, "fionread", "fd must be a non-negative int32"))
		return NULL;
	int n = 0;
	if (ioctl(fd, FIONREAD, &n) < 0)
		return bridge_throw_errno(env, "ioctl(FIONREAD)", errno, 0, NULL);
	return make_int(env, n);
}

static napi_value readlink_(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	char *path;
	int32_t dirfd = AT_FDCWD;
	if (!bridge_get_args_range(env, info, 1, 2, argv, NULL, "readlink"))
		return NULL;
	if (!bridge_is_nullish(env, argv[1]) &&
	    !bridge_arg_fd(env, argv[1], &dirfd, "readlink", "dirfd must be a non-negative int32"))
		return NULL;
	if (!bridge_arg_string(env, argv[0], &path, "readlink", "path must be a string without NUL"))
		return NULL;
	size_t cap = PATH_MAX;
	for (;;) {
		char *buf = malloc(cap);
		if (!buf) {
			free(path);
			return bridge_throw_errno(env, "malloc", ENOMEM, 0, NULL);
		}
		ssize_t n = readlinkat(dirfd, path, buf, cap);
		if (n < 0) {
			int err = errno;
			free(buf);
			napi_value r = bridge_throw_errno(env, "readlink", err, 0, path);
			free(path);
			return r;
		}
		if ((size_t)n < cap) {
			napi_value r;
			napi_create_string_utf8(env, buf, (size_t)n, &r);
			free(buf);
			free(path);
			return r;
		}
		free(buf);
		cap *= 2;
	}
}

static const char *type_name(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG:
		return "file";
	case S_IFDIR:
		return "directory";
	case S_IFIFO:
		return "fifo";
	case S_IFSOCK:
		return "socket";
	case S_IFCHR:
		return "char";
	case S_IFBLK:
		return "block";
	case S_IFLNK:
		return "symlink";
	default:
		return "unknown";
	}
}

static napi_value fstat_(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, "fstat") ||
	    !bridge_arg_fd(env, argv[0], &fd, "fstat", "fd must be a non-negative int32"))
		return NULL;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return bridge_throw_errno(env, "fstat", errno, 0, NULL);
	napi_value r, v;
	napi_create_object(env, &r);
	napi_create_string_utf8(env, type_name(st.st_mode), NAPI_AUTO_LENGTH, &v);
	napi_set_named_property(env, r, "type", v);
	napi_create_bigint_uint64(env, st.st_dev, &v);
	napi_set_named_property(env, r, "dev", v);
	napi_create_bigint_uint64(env, st.st_ino, &v);
	napi_set_named_property(env, r, "ino", v);
	napi_create_uint32(env, st.st_mode, &v);
	napi_set_named_property(env, r, "mode", v);
	napi_create_uint32(env, (uint32_t)st.st_nlink, &v);
	napi_set_named_property(env, r, "nlink", v);
	napi_create_uint32(env, st.st_uid, &v);
	napi_set_named_property(env, r, "uid", v);
	napi_create_uint32(env, st.st_gid, &v);
	napi_set_named_property(env, r, "gid", v);
	napi_create_bigint_uint64(env, st.st_rdev, &v);
	napi_set_named_property(env, r, "rdev", v);
	napi_set_named_property(env, r, "size", bridge_make_i64(env, st.st_size));
	return r;
}

void bridge_init_pidfd(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "pidfdOpen", pidfd_open_ },
		{ "pidfdGetfd", pidfd_getfd_ },
		{ "pidfdSendSignal", pidfd_send_signal_ },
		{ "close", close_ },
		{ "pipe2", pipe2_ },
		{ "tee", tee_ },
		{ "splice", splice_ },
		{ "fcntl", fcntl_ },
		{ "fionread", fionread },
		{ "readlink", readlink_ },
		{ "fstat", fstat_ },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
