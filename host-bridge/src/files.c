/* File-level syscalls Node has no call for: hole punching for dedup,
 * SEEK_DATA/SEEK_HOLE (dedup's checks, sparse ghost files) and mknod (ghost
 * FIFOs and device nodes come back as the nodes they were). */
#include "bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static napi_value punch_hole(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	int32_t fd;
	uint64_t off, len;
	if (!bridge_get_args(env, info, 3, argv, "punchHole") ||
	    !bridge_arg_int32(env, argv[0], &fd, "punchHole", "fd must be an int32") ||
	    !bridge_arg_u64(env, argv[1], &off, "punchHole", "offset must be a non-negative integer") ||
	    !bridge_arg_u64(env, argv[2], &len, "punchHole", "length must be a non-negative integer"))
		return NULL;
	if (off > INT64_MAX || len > INT64_MAX)
		return bridge_throw_arg(env, "punchHole", "offset/length out of range");
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
		return bridge_throw_errno(env, "fallocate", errno, 0, NULL);
	return NULL;
}

/* Returns the offset, or -1 when the kernel says ENXIO (no more data/holes). */
static napi_value seek_common(napi_env env, napi_callback_info info, int whence, const char *fn)
{
	napi_value argv[2];
	int32_t fd;
	uint64_t off;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_int32(env, argv[0], &fd, fn, "fd must be an int32") ||
	    !bridge_arg_u64(env, argv[1], &off, fn, "offset must be a non-negative integer"))
		return NULL;
	off_t r = lseek(fd, (off_t)off, whence);
	if (r < 0) {
		if (errno == ENXIO)
			return bridge_make_i64(env, -1);
		return bridge_throw_errno(env, "lseek", errno, 0, NULL);
	}
	return bridge_make_i64(env, (int64_t)r);
}

static napi_value seek_data(napi_env env, napi_callback_info info)
{
	return seek_common(env, info, SEEK_DATA, "seekData");
}

static napi_value seek_hole(napi_env env, napi_callback_info info)
{
	return seek_common(env, info, SEEK_HOLE, "seekHole");
}

/* mknod(path, mode, dev): mode carries the file type (S_IFIFO, S_IFCHR, ...). */
static napi_value mknod_(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	char *path = NULL;
	uint32_t mode;
	uint64_t dev;
	if (!bridge_get_args(env, info, 3, argv, "mknod") ||
	    !bridge_arg_string(env, argv[0], &path, "mknod", "path must be a string"))
		return NULL;
	napi_value ret = NULL;
	if (!bridge_arg_uint32(env, argv[1], &mode, "mknod", "mode must be a uint32") ||
	    !bridge_arg_u64(env, argv[2], &dev, "mknod", "dev must be a non-negative integer"))
		goto out;
	if (mknod(path, (mode_t)mode, (dev_t)dev) < 0)
		bridge_throw_errno(env, "mknod", errno, 0, path);
out:
	free(path);
	return ret;
}

/* syncfs(fd): writes out the whole file system fd is on, in one call (many
 * small image files cost one fsync each otherwise). */
static napi_value syncfs_(napi_env env, napi_callback_info info)
{
	const char *fn = "syncfs";
	napi_value argv[1];
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32"))
		return NULL;
	if (syncfs(fd) < 0)
		return bridge_throw_errno(env, "syncfs", errno, 0, NULL);
	return NULL;
}

void bridge_init_files(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "punchHole", punch_hole }, { "seekData", seek_data }, { "seekHole", seek_hole },
		{ "mknod", mknod_ },	     { "syncfs", syncfs_ },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
