/* File-level syscalls Node has no call for: hole punching for dedup,
 * SEEK_DATA/SEEK_HOLE (dedup's checks, sparse ghost files), mknod (ghost
 * FIFOs and device nodes come back as the nodes they were), linkat of an fd
 * (--link-remap gives an unlinked file a name again), a whole file read on
 * the thread pool without the event loop between reads (readWholeAsync), and many
 * small files read or written there one after another (readFilesAsync,
 * writeNewFiles). */
#include "bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
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

static napi_value seek_set(napi_env env, napi_callback_info info)
{
	return seek_common(env, info, SEEK_SET, "seekSet");
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

/* linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH): a new name for the inode fd
 * is open on, also when its old name is gone (the kernel refuses only an
 * inode with no link left: ENOENT). Needs CAP_DAC_READ_SEARCH. */
static napi_value link_fd(napi_env env, napi_callback_info info)
{
	const char *fn = "linkFd";
	napi_value argv[2];
	int32_t fd;
	char *path = NULL;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_string(env, argv[1], &path, fn, "path must be a string"))
		return NULL;
	if (linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH) < 0)
		bridge_throw_errno(env, "linkat", errno, 0, path);
	free(path);
	return NULL;
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

struct syncfs_job {
	napi_async_work work;
	napi_deferred deferred;
	int fd;
	int err;
};

static void syncfs_run(napi_env env, void *arg)
{
	(void)env;
	struct syncfs_job *j = arg;
	if (syncfs(j->fd) < 0)
		j->err = errno;
}

static void syncfs_done(napi_env env, napi_status status, void *arg)
{
	struct syncfs_job *j = arg;
	if (status == napi_cancelled)
		j->err = ECANCELED;
	napi_value undef;
	napi_get_undefined(env, &undef);
	if (j->err)
		napi_reject_deferred(env, j->deferred, bridge_errno_error(env, "syncfs", j->err, 0, NULL));
	else
		napi_resolve_deferred(env, j->deferred, undef);
	napi_delete_async_work(env, j->work);
	free(j);
}

/* syncfsAsync(fd): syncfs on libuv's thread pool; fd stays open until it settles. */
static napi_value syncfs_async(napi_env env, napi_callback_info info)
{
	const char *fn = "syncfsAsync";
	napi_value argv[1];
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32"))
		return NULL;
	struct syncfs_job *j = calloc(1, sizeof(*j));
	if (!j)
		return bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
	j->fd = fd;
	napi_value promise = bridge_queue_job(env, fn, syncfs_run, syncfs_done, j, &j->work, &j->deferred);
	if (!promise)
		free(j);
	return promise;
}

/* Most a whole-file read takes (a /proc file of a task with very many mappings is some MiB). */
#define WHOLE_MAX (256U << 20)

struct whole_job {
	napi_async_work work;
	napi_deferred deferred;
	char *path;
	uint8_t *data;
	size_t len;
	int err;
	const char *what;
};

static void whole_run(napi_env env, void *arg)
{
	(void)env;
	struct whole_job *j = arg;
	int fd = open(j->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		j->err = errno;
		j->what = "open";
		return;
	}
	size_t cap = 0;
	for (;;) {
		if (j->len == cap) {
			size_t ncap = cap ? cap * 2 : 64 << 10;
			uint8_t *p = ncap <= WHOLE_MAX ? realloc(j->data, ncap) : NULL;
			if (!p) {
				j->err = ncap <= WHOLE_MAX ? ENOMEM : EFBIG;
				j->what = "read";
				break;
			}
			j->data = p;
			cap = ncap;
		}
		ssize_t n = read(fd, j->data + j->len, cap - j->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			j->err = errno;
			j->what = "read";
			break;
		}
		if (n == 0)
			break;
		j->len += (size_t)n;
	}
	close(fd);
}

static void whole_done(napi_env env, napi_status status, void *arg)
{
	struct whole_job *j = arg;
	napi_value v;
	if (status == napi_cancelled)
		j->err = ECANCELED, j->what = "read";
	if (j->err)
		napi_reject_deferred(env, j->deferred, bridge_errno_error(env, j->what, j->err, 0, j->path));
	else if (napi_create_buffer_copy(env, j->len, j->data ? (const void *)j->data : "", NULL, &v) == napi_ok)
		napi_resolve_deferred(env, j->deferred, v);
	else
		napi_reject_deferred(env, j->deferred,
				     bridge_errno_error(env, "napi_create_buffer_copy", ENOMEM, 0, j->path));
	napi_delete_async_work(env, j->work);
	free(j->data);
	free(j->path);
	free(j);
}

/* readWholeAsync(path): the file read to its end on libuv's thread pool, read after
 * read without the event loop between them (a /proc file comes a page per read). */
static napi_value read_whole_async(napi_env env, napi_callback_info info)
{
	const char *fn = "readWholeAsync";
	napi_value argv[1];
	struct whole_job *j = calloc(1, sizeof(*j));
	if (!j)
		return bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_string(env, argv[0], &j->path, fn, "path must be a string")) {
		free(j);
		return NULL;
	}
	napi_value promise = bridge_queue_job(env, fn, whole_run, whole_done, j, &j->work, &j->deferred);
	if (!promise) {
		free(j->path);
		free(j);
	}
	return promise;
}

/* Many small files read or written on the thread pool, one after another, while the main
 * thread goes on (readFilesAsync, writeNewFiles): a dump of a server writes a tcp-stream
 * image per connection and its restore reads them (a thousand creates are 0.03-0.3 ms
 * each on an ext4 without a journal, by how many inodes were freed in the last minute; a
 * thousand opens, reads and closes ~35 us each here). */
struct files_job {
	napi_async_work work;
	napi_deferred deferred;
	char *paths; /* NUL-terminated, one after another */
	size_t n;
	int64_t *lens; /* write: the bytes of each; read: the bytes read, or -errno */
	uint8_t *data; /* the files' bytes one after another */
	size_t len, cap;
	uint64_t each, total; /* read: most bytes of one file, of them all */
	size_t done;	      /* write: files written whole */
	int err;	      /* write: the failure; read: the job's own (memory) */
	const char *what;     /* the syscall that failed */
	const char *path;     /* the file that failed */
};

static void files_job_free(struct files_job *j)
{
	free(j->paths);
	free(j->lens);
	free(j->data);
	free(j);
}

/* A job for the NUL-terminated paths of Buffer `v` (copied), with room for a length of
 * each; NULL after throwing. */
static struct files_job *files_job_new(napi_env env, napi_value v, const char *fn)
{
	uint8_t *paths;
	size_t len;
	if (!bridge_arg_bytes(env, v, &paths, &len, fn, "paths must be NUL-terminated paths in a Buffer"))
		return NULL;
	if (len && paths[len - 1] != 0) {
		bridge_throw_arg(env, fn, "paths must end with a NUL");
		return NULL;
	}
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		n += paths[i] == 0;
	struct files_job *j = calloc(1, sizeof(*j));
	if (j) {
		j->paths = malloc(len ? len : 1);
		j->lens = calloc(n ? n : 1, sizeof(int64_t));
	}
	if (!j || !j->paths || !j->lens) {
		if (j)
			files_job_free(j);
		bridge_throw_errno(env, "malloc", ENOMEM, 0, NULL);
		return NULL;
	}
	memcpy(j->paths, paths, len);
	j->n = n;
	return j;
}

static napi_value files_job_queue(napi_env env, const char *fn, napi_async_execute_callback run,
				  napi_async_complete_callback done, struct files_job *j)
{
	napi_value promise = bridge_queue_job(env, fn, run, done, j, &j->work, &j->deferred);
	if (!promise)
		files_job_free(j);
	return promise;
}

/* Makes `path` new (O_EXCL) and writes `len` bytes into it; an errno, the file removed. */
static int write_new_file(struct files_job *j, const char *path, const uint8_t *data, uint64_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		j->what = "open";
		return errno;
	}
	for (uint64_t off = 0; off < len;) {
		ssize_t w = write(fd, data + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : EIO;
			close(fd);
			unlink(path);
			j->what = "write";
			return e;
		}
		off += (uint64_t)w;
	}
	if (close(fd) < 0 && errno != EINTR) {
		int e = errno;
		unlink(path);
		j->what = "close";
		return e;
	}
	return 0;
}

/* writeNewFiles' jobs create one after another: creates side by side in a directory
 * contend in the file system's inode allocator. On an ext4 without a journal after 3,000
 * files were removed, 1,000 creates in 32 jobs at once took 150-175 ms and 285-337 ms of
 * system time, one job after another 118-128 ms and 115-126 ms, leaving the main
 * thread its CPU. */
static pthread_mutex_t creating = PTHREAD_MUTEX_INITIALIZER;

static void new_files_run(napi_env env, void *arg)
{
	(void)env;
	struct files_job *j = arg;
	const char *path = j->paths;
	const uint8_t *data = j->data;
	pthread_mutex_lock(&creating);
	for (; j->done < j->n; j->done++) {
		j->err = write_new_file(j, path, data, (uint64_t)j->lens[j->done]);
		if (j->err) {
			j->path = path;
			break;
		}
		data += j->lens[j->done];
		path += strlen(path) + 1;
	}
	pthread_mutex_unlock(&creating);
}

static void new_files_done(napi_env env, napi_status status, void *arg)
{
	struct files_job *j = arg;
	if (status == napi_cancelled && !j->err)
		j->err = ECANCELED, j->what = "open", j->path = j->paths;
	if (j->err) {
		napi_value e = bridge_errno_error(env, j->what, j->err, 0, j->path), index;
		if (e && napi_create_uint32(env, (uint32_t)j->done, &index) == napi_ok)
			napi_set_named_property(env, e, "index", index);
		napi_reject_deferred(env, j->deferred, e);
	} else {
		napi_value v;
		if (napi_create_uint32(env, (uint32_t)j->done, &v) == napi_ok)
			napi_resolve_deferred(env, j->deferred, v);
	}
	napi_delete_async_work(env, j->work);
	files_job_free(j);
}

/* writeNewFiles(paths, data, lens): on the thread pool, file i made at the i-th of the
 * NUL-terminated paths (O_EXCL, 0600) and written with the next lens[i] bytes of data;
 * resolves to the count written. A failure rejects naming the syscall and the file, its
 * `index` the count written whole before it (that file itself is not left behind). The
 * first that fails stops the job. */
static napi_value write_new_files(napi_env env, napi_callback_info info)
{
	const char *fn = "writeNewFiles";
	napi_value argv[3];
	uint8_t *data;
	size_t data_len, n;
	uint64_t *lens;
	if (!bridge_get_args(env, info, 3, argv, fn) ||
	    !bridge_arg_bytes(env, argv[1], &data, &data_len, fn, "data must be a Buffer") ||
	    !bridge_arg_u64s(env, argv[2], &lens, &n, 1, fn, "lens must be a BigUint64Array"))
		return NULL;
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += lens[i] > data_len ? (uint64_t)data_len + 1 : lens[i];
	if (total != data_len)
		return bridge_throw_arg(env, fn, "the lengths must add up to the data's");
	struct files_job *j = files_job_new(env, argv[0], fn);
	if (!j)
		return NULL;
	if (j->n != n) {
		files_job_free(j);
		return bridge_throw_arg(env, fn, "paths must hold one NUL-terminated path per length");
	}
	j->data = malloc(data_len ? data_len : 1);
	if (!j->data) {
		files_job_free(j);
		return bridge_throw_errno(env, "malloc", ENOMEM, 0, NULL);
	}
	memcpy(j->data, data, data_len);
	memcpy(j->lens, lens, n * sizeof(uint64_t));
	return files_job_queue(env, fn, new_files_run, new_files_done, j);
}

/* Reads `path` to its end after the bytes read so far (its size is not asked: a /proc
 * file says 0); its length, or -errno (-EFBIG: past `each`, or past `total` with the
 * others, and not kept). */
static int64_t read_one(struct files_job *j, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t start = j->len;
	uint64_t limit = j->total - j->len < j->each ? j->total - j->len : j->each;
	int64_t r;
	for (;;) {
		uint64_t got = j->len - start;
		if (got > limit) {
			r = -EFBIG;
			break;
		}
		/* one byte past the limit says the file is longer */
		size_t want = limit + 1 - got < (64 << 10) ? (size_t)(limit + 1 - got) : 64 << 10;
		if (j->len + want > j->cap) {
			size_t ncap = j->cap ? j->cap : 64 << 10;
			while (ncap < j->len + want)
				ncap *= 2;
			uint8_t *d = realloc(j->data, ncap);
			if (!d) {
				j->err = ENOMEM;
				r = -ENOMEM;
				break;
			}
			j->data = d;
			j->cap = ncap;
		}
		ssize_t n = read(fd, j->data + j->len, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : (int64_t)got;
			break;
		}
		j->len += (size_t)n;
	}
	if (r < 0)
		j->len = start;
	close(fd);
	return r;
}

static void read_files_run(napi_env env, void *arg)
{
	(void)env;
	struct files_job *j = arg;
	const char *path = j->paths;
	for (size_t i = 0; i < j->n && !j->err; i++) {
		j->lens[i] = read_one(j, path);
		path += strlen(path) + 1;
	}
}

static void read_files_done(napi_env env, napi_status status, void *arg)
{
	struct files_job *j = arg;
	napi_value out, data, lens, ab;
	void *mem;
	if (status == napi_cancelled && !j->err)
		j->err = ECANCELED;
	if (!j->err &&
	    (napi_create_object(env, &out) != napi_ok ||
	     napi_create_buffer_copy(env, j->len, j->len ? (const void *)j->data : "", NULL, &data) != napi_ok ||
	     napi_create_arraybuffer(env, j->n * sizeof(int64_t), &mem, &ab) != napi_ok))
		j->err = ENOMEM;
	if (j->err) {
		napi_reject_deferred(env, j->deferred, bridge_errno_error(env, "readFilesAsync", j->err, 0, NULL));
	} else {
		if (j->n)
			memcpy(mem, j->lens, j->n * sizeof(int64_t));
		napi_create_typedarray(env, napi_bigint64_array, j->n, ab, 0, &lens);
		napi_set_named_property(env, out, "data", data);
		napi_set_named_property(env, out, "lens", lens);
		napi_resolve_deferred(env, j->deferred, out);
	}
	napi_delete_async_work(env, j->work);
	files_job_free(j);
}

/* readFilesAsync(paths, each, total): on the thread pool, each of the NUL-terminated
 * paths read whole, one after another; resolves to { data, lens }: the files' bytes one
 * after another, and each one's length or -errno (-EFBIG: past `each` bytes, or past
 * `total` for them all, not read). Rejects only when it runs out of memory. */
static napi_value read_files_async(napi_env env, napi_callback_info info)
{
	const char *fn = "readFilesAsync";
	napi_value argv[3];
	uint64_t each, total;
	if (!bridge_get_args(env, info, 3, argv, fn) ||
	    !bridge_arg_u64(env, argv[1], &each, fn, "each must be a non-negative integer") ||
	    !bridge_arg_u64(env, argv[2], &total, fn, "total must be a non-negative integer"))
		return NULL;
	struct files_job *j = files_job_new(env, argv[0], fn);
	if (!j)
		return NULL;
	j->each = each;
	j->total = total;
	return files_job_queue(env, fn, read_files_run, read_files_done, j);
}

void bridge_init_files(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "punchHole", punch_hole },
		{ "seekData", seek_data },
		{ "seekHole", seek_hole },
		{ "seekSet", seek_set },
		{ "mknod", mknod_ },
		{ "syncfs", syncfs_ },
		{ "syncfsAsync", syncfs_async },
		{ "readWholeAsync", read_whole_async },
		{ "writeNewFiles", write_new_files },
		{ "readFilesAsync", read_files_async },
		{ "linkFd", link_fd },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
