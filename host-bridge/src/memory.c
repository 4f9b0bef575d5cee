/* Reading and writing another task's memory.
 *
 * process_vm_readv/writev are the fast path (no ptrace-stop needed, and they
 * may run on any thread); /proc/PID/mem is the slow path that also reaches
 * pages the task cannot read itself (PROT_NONE, read-only targets of a write),
 * because the kernel accesses it with FOLL_FORCE. */
#include "bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* UIO_MAXIOV: the kernel rejects more iovecs per call with EINVAL. */
#define BATCH_IOV_MAX 1024
/* MAX_RW_COUNT is INT_MAX rounded down to a page; stay well under it. */
#define CHUNK_MAX (1ULL << 30)
#define ALIGN	  4096

/* A remote address must fit in a pointer and leave room for the length. */
static bool check_span(napi_env env, uint64_t addr, uint64_t len, const char *fn)
{
	if (addr > UINT64_MAX - len) {
		bridge_throw_arg(env, fn, "remoteAddr + length overflows the address space");
		return false;
	}
	return true;
}

typedef ssize_t (*vm_rw_fn)(pid_t, const struct iovec *, unsigned long, const struct iovec *, unsigned long,
			    unsigned long);

/* Moves len bytes between local and remote, looping over partial transfers.
 * Returns the bytes moved; -1 (errno set) only when nothing could be moved. */
static int64_t vm_rw(vm_rw_fn f, int pid, uint8_t *local, uint64_t remote, uint64_t len)
{
	uint64_t done = 0;
	while (done < len) {
		uint64_t n = len - done < CHUNK_MAX ? len - done : CHUNK_MAX;
		struct iovec l = { local + done, n };
		struct iovec r = { (void *)(uintptr_t)(remote + done), n };
		ssize_t got = f(pid, &l, 1, &r, 1, 0);
		if (got < 0) {
			if (done == 0)
				return -1;
			break;
		}
		if (got == 0)
			break;
		done += (uint64_t)got;
	}
	return (int64_t)done;
}

static napi_value vm_readv(napi_env env, napi_callback_info info)
{
	const char *fn = "processVmReadv";
	napi_value argv[5];
	int32_t pid;
	uint64_t addr, len;
	uint8_t *buf;
	size_t buf_len, off, room;
	if (!bridge_get_args_range(env, info, 4, 5, argv, NULL, fn) || !bridge_arg_pid(env, argv[0], &pid, fn) ||
	    !bridge_arg_u64(env, argv[1], &addr, fn, "remoteAddr must be a non-negative integer") ||
	    !bridge_arg_u64(env, argv[2], &len, fn, "length must be a non-negative integer") ||
	    !bridge_arg_bytes(env, argv[3], &buf, &buf_len, fn, "into must be a Buffer/TypedArray/ArrayBuffer") ||
	    !bridge_arg_window(env, argv[4], NULL, buf_len, &off, &room, fn) || !check_span(env, addr, len, fn))
		return NULL;
	if (len > room)
		return bridge_throw_arg(env, fn, "length does not fit in the buffer after offset");
	int64_t r = vm_rw(process_vm_readv, pid, buf + off, addr, len);
	if (r < 0)
		return bridge_throw_errno(env, "process_vm_readv", errno, pid, NULL);
	return bridge_make_i64(env, r);
}

static napi_value vm_writev(napi_env env, napi_callback_info info)
{
	const char *fn = "processVmWritev";
	napi_value argv[5];
	int32_t pid;
	uint64_t addr;
	uint8_t *buf;
	size_t buf_len, off, n;
	if (!bridge_get_args_range(env, info, 3, 5, argv, NULL, fn) || !bridge_arg_pid(env, argv[0], &pid, fn) ||
	    !bridge_arg_u64(env, argv[1], &addr, fn, "remoteAddr must be a non-negative integer") ||
	    !bridge_arg_bytes(env, argv[2], &buf, &buf_len, fn, "from must be a Buffer/TypedArray/ArrayBuffer") ||
	    !bridge_arg_window(env, argv[3], argv[4], buf_len, &off, &n, fn) || !check_span(env, addr, n, fn))
		return NULL;
	int64_t r = vm_rw(process_vm_writev, pid, buf + off, addr, n);
	if (r < 0)
		return bridge_throw_errno(env, "process_vm_writev", errno, pid, NULL);
	return bridge_make_i64(env, r);
}

/* Many remote ranges packed one after another into a local buffer, IOV_MAX
 * ranges per syscall. Reading stops at the first byte that cannot be read; the
 * result says how far it got, and the caller falls back to /proc/PID/mem for
 * the rest of that range. */
static napi_value vm_readv_batch(napi_env env, napi_callback_info info)
{
	const char *fn = "processVmReadvBatch";
	napi_value argv[4];
	int32_t pid;
	uint8_t *buf;
	size_t buf_len, off, room;
	if (!bridge_get_args_range(env, info, 3, 4, argv, NULL, fn) || !bridge_arg_pid(env, argv[0], &pid, fn))
		return NULL;
	bool is = false;
	napi_typedarray_type type;
	size_t nwords = 0, ab_off;
	void *rp = NULL;
	napi_value ab;
	if (napi_is_typedarray(env, argv[1], &is) != napi_ok || !is ||
	    napi_get_typedarray_info(env, argv[1], &type, &nwords, &rp, &ab, &ab_off) != napi_ok ||
	    type != napi_biguint64_array || nwords % 2)
		return bridge_throw_arg(env, fn, "ranges must be a BigUint64Array of (addr, length) pairs");
	if (!bridge_arg_bytes(env, argv[2], &buf, &buf_len, fn, "into must be a Buffer/TypedArray/ArrayBuffer") ||
	    !bridge_arg_window(env, argv[3], NULL, buf_len, &off, &room, fn))
		return NULL;
	const uint64_t *ranges = rp;
	size_t nranges = nwords / 2;
	uint64_t total = 0;
	for (size_t i = 0; i < nranges; i++) {
		if (!check_span(env, ranges[2 * i], ranges[2 * i + 1], fn))
			return NULL;
		if (ranges[2 * i + 1] > room - total)
			return bridge_throw_arg(env, fn, "the ranges do not fit in the buffer after offset");
		total += ranges[2 * i + 1];
	}

	struct iovec remote[BATCH_IOV_MAX];
	size_t i = 0;	   /* first range not completely read */
	uint64_t part = 0; /* bytes of range i already read */
	uint64_t done = 0;
	int stop_errno = 0;
	while (i < nranges) {
		size_t k = 0;
		uint64_t want = 0;
		for (size_t j = i; j < nranges && k < BATCH_IOV_MAX; j++) {
			uint64_t a = ranges[2 * j] + (j == i ? part : 0);
			uint64_t l = ranges[2 * j + 1] - (j == i ? part : 0);
			if (l > CHUNK_MAX - want) {
				if (k == 0) /* one huge range: take a chunk of it */
					l = CHUNK_MAX;
				else
					break;
			}
			if (l == 0 && j == i && k == 0) {
				/* empty range: nothing to do but count it */
				continue;
			}
			remote[k].iov_base = (void *)(uintptr_t)a;
			remote[k].iov_len = l;
			want += l;
			k++;
		}
		if (want == 0) {
			i = nranges;
			break;
		}
		struct iovec local = { buf + off + done, want };
		ssize_t got = process_vm_readv(pid, &local, 1, remote, k, 0);
		if (got < 0) {
			if (errno == EFAULT || errno == ENOMEM) {
				stop_errno = errno;
				break;
			}
			return bridge_throw_errno(env, "process_vm_readv", errno, pid, NULL);
		}
		if (got == 0) {
			stop_errno = EFAULT;
			break;
		}
		done += (uint64_t)got;
		/* Walk the ranges over what was read, skipping empty ones. */
		uint64_t left = (uint64_t)got;
		while (i < nranges) {
			uint64_t rest = ranges[2 * i + 1] - part;
			if (left < rest) {
				part += left;
				break;
			}
			left -= rest;
			part = 0;
			i++;
		}
	}
	napi_value res, v;
	napi_create_object(env, &res);
	napi_set_named_property(env, res, "bytes", bridge_make_i64(env, (int64_t)done));
	napi_create_uint32(env, (uint32_t)i, &v);
	napi_set_named_property(env, res, "complete", v);
	if (stop_errno) {
		napi_create_string_utf8(env, strerrorname_np(stop_errno), NAPI_AUTO_LENGTH, &v);
		napi_set_named_property(env, res, "stoppedBy", v);
	}
	return res;
}

static int open_mem(int pid, int flags, char *path, size_t path_len)
{
	snprintf(path, path_len, "/proc/%d/mem", pid);
	int fd = open(path, flags | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		errno = ESRCH;
	return fd;
}

/* pread/pwrite on /proc/PID/mem, looping over short transfers. */
static napi_value proc_mem_rw(napi_env env, napi_callback_info info, bool write)
{
	const char *fn = write ? "writeProcMem" : "readProcMem";
	napi_value argv[5];
	int32_t pid;
	uint64_t addr, len = 0;
	uint8_t *buf;
	size_t buf_len, off, n;
	if (!bridge_get_args_range(env, info, write ? 3 : 4, 5, argv, NULL, fn) ||
	    !bridge_arg_pid(env, argv[0], &pid, fn) ||
	    !bridge_arg_u64(env, argv[1], &addr, fn, "remoteAddr must be a non-negative integer"))
		return NULL;
	if (write) {
		if (!bridge_arg_bytes(env, argv[2], &buf, &buf_len, fn,
				      "from must be a Buffer/TypedArray/ArrayBuffer") ||
		    !bridge_arg_window(env, argv[3], argv[4], buf_len, &off, &n, fn))
			return NULL;
		len = n;
	} else {
		if (!bridge_arg_u64(env, argv[2], &len, fn, "length must be a non-negative integer") ||
		    !bridge_arg_bytes(env, argv[3], &buf, &buf_len, fn,
				      "into must be a Buffer/TypedArray/ArrayBuffer") ||
		    !bridge_arg_window(env, argv[4], NULL, buf_len, &off, &n, fn))
			return NULL;
		if (len > n)
			return bridge_throw_arg(env, fn, "length does not fit in the buffer after offset");
	}
	/* pread's offset is a signed off_t: user-space addresses are far below. */
	if (addr > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - addr)
		return bridge_throw_arg(env, fn, "remoteAddr + length must be below 2^63");
	char path[64];
	int fd = open_mem(pid, write ? O_WRONLY : O_RDONLY, path, sizeof(path));
	if (fd < 0)
		return bridge_throw_errno(env, "open", errno, pid, path);
	uint64_t done = 0;
	while (done < len) {
		uint64_t chunk = len - done < CHUNK_MAX ? len - done : CHUNK_MAX;
		ssize_t r = write ? pwrite(fd, buf + off + done, chunk, (off_t)(addr + done))
				  : pread(fd, buf + off + done, chunk, (off_t)(addr + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int err = errno;
			if (done > 0)
				break;
			close(fd);
			return bridge_throw_errno(env, write ? "pwrite" : "pread", err, pid, path);
		}
		if (r == 0)
			break;
		done += (uint64_t)r;
	}
	close(fd);
	return bridge_make_i64(env, (int64_t)done);
}

static napi_value read_proc_mem(napi_env env, napi_callback_info info)
{
	return proc_mem_rw(env, info, false);
}

static napi_value write_proc_mem(napi_env env, napi_callback_info info)
{
	return proc_mem_rw(env, info, true);
}

static void free_aligned(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	free(data);
}

/* A Buffer whose bytes start on a page boundary: process_vm_readv into an
 * unaligned buffer (Buffer.allocUnsafe's pool) measured 3x slower here. */
static napi_value alloc_aligned(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	uint64_t size;
	if (!bridge_get_args(env, info, 1, argv, "allocAligned") ||
	    !bridge_arg_u64(env, argv[0], &size, "allocAligned", "size must be a non-negative integer"))
		return NULL;
	/* buffer.constants.MAX_LENGTH on 64-bit Node 20 is 2^32. */
	if (size == 0 || size > (1ULL << 32))
		return bridge_throw_arg(env, "allocAligned", "size must be in 1..2^32");
	void *p = NULL;
	int err = posix_memalign(&p, ALIGN, (size_t)size);
	if (err)
		return bridge_throw_errno(env, "posix_memalign", err, 0, NULL);
	napi_value r;
	if (napi_create_external_buffer(env, (size_t)size, p, free_aligned, NULL, &r) != napi_ok) {
		free(p);
		return bridge_throw_errno(env, "napi_create_external_buffer", ENOMEM, 0, NULL);
	}
	return r;
}

static void free_mapped(napi_env env, void *data, void *hint)
{
	(void)env;
	munmap(data, (size_t)(uintptr_t)hint);
}

#define HUGE_ALIGN (2ULL << 20)

/* Zeroes [p, p + len) with read(2) of /dev/zero: the kernel writes every page. */
static void zero_by_kernel(uint8_t *p, size_t len)
{
	int z = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	size_t off = 0;
	while (z >= 0 && off < len) {
		ssize_t n = read(z, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	if (z >= 0)
		close(z);
	/* no /dev/zero: written from here at least */
	for (; off < len; off += ALIGN)
		((volatile uint8_t *)p)[off] = 0;
}

/* size bytes of fresh memory on a 2 MiB boundary, populated; NULL with errno and *what
 * naming the call that failed. */
static uint8_t *map_populated(size_t len, bool huge, const char **what)
{
	uint8_t *raw = mmap(NULL, len + HUGE_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		*what = "mmap";
		return NULL;
	}
	uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_ALIGN - 1) & ~(uintptr_t)(HUGE_ALIGN - 1));
	if (p > raw)
		munmap(raw, (size_t)(p - raw));
	if (raw + len + HUGE_ALIGN > p + len)
		munmap(p + len, (size_t)(raw + len + HUGE_ALIGN - (p + len)));
	if (huge)
		(void)madvise(p, len, MADV_HUGEPAGE);
	bool populated = madvise(p, len, MADV_POPULATE_WRITE) == 0;
	if (!populated && errno != EINVAL) {
		int err = errno;
		munmap(p, len);
		*what = "madvise(MADV_POPULATE_WRITE)";
		errno = err;
		return NULL;
	}
	/* Small pages are written once more, by the kernel (and every page before Linux 5.14,
	 * which has no MADV_POPULATE_WRITE). On these VMs (a PVM guest: pvm_no_zero_page on
	 * the kernel's command line) the kernel's first write to each small page of a buffer
	 * costs ~5 us however the buffer was populated: without this the populate took 0.22 s
	 * per GiB and the first process_vm_readv into the buffer 1.3-1.7 s per GiB (10x the
	 * next one). With it the copy takes 0.1 s per GiB and the populate what the memory
	 * costs, which is what the caller times (capture.ts). A write from user space did not
	 * do it (the copy stayed as slow). Huge pages needed none of it (the copy 0.1 s). */
	if (!huge || !populated)
		zero_by_kernel(p, len);
	return p;
}

static bool populated_args(napi_env env, napi_callback_info info, const char *fn, size_t *len, bool *huge)
{
	napi_value argv[2];
	uint64_t size;
	*huge = false;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_u64(env, argv[0], &size, fn, "size must be a non-negative integer"))
		return false;
	if (napi_get_value_bool(env, argv[1], huge) != napi_ok) {
		bridge_throw_arg(env, fn, "huge must be a boolean");
		return false;
	}
	if (size == 0 || size > (1ULL << 32) || size % ALIGN) {
		bridge_throw_arg(env, fn, "size must be a multiple of 4096 in 4096..2^32");
		return false;
	}
	*len = (size_t)size;
	return true;
}

static napi_value mapped_buffer(napi_env env, uint8_t *p, size_t len)
{
	napi_value r;
	if (napi_create_external_buffer(env, len, p, free_mapped, (void *)(uintptr_t)len, &r) != napi_ok) {
		munmap(p, len);
		return NULL;
	}
	return r;
}

/* A Buffer of memory the kernel has already allocated and mapped, for copying a frozen
 * task's memory into; `huge` asks for transparent huge pages (the mapping then starts on
 * a 2 MiB boundary). Which kind comes faster varies on this VM: its host backs guest
 * memory lazily, and a huge page is taken from a large free block, often never touched
 * since the host reclaimed it (1 GiB took 5-8 s to populate one hour, 0.06 s another),
 * while small pages mostly come from memory freed moments ago (0.25 s one hour, 2 s
 * another). The caller times both and keeps the faster (capture.ts). */
static napi_value alloc_populated(napi_env env, napi_callback_info info)
{
	size_t len;
	bool huge;
	if (!populated_args(env, info, "allocPopulated", &len, &huge))
		return NULL;
	const char *what;
	uint8_t *p = map_populated(len, huge, &what);
	if (!p)
		return bridge_throw_errno(env, what, errno, 0, NULL);
	napi_value r = mapped_buffer(env, p, len);
	return r ? r : bridge_throw_errno(env, "napi_create_external_buffer", ENOMEM, 0, NULL);
}

struct populate_job {
	napi_async_work work;
	napi_deferred deferred;
	size_t len;
	bool huge;
	uint8_t *p;
	int err;
	const char *what;
	/* nanoseconds the populating took on its thread (not the wait for one) */
	uint64_t ns;
};

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static void populate_run(napi_env env, void *arg)
{
	(void)env;
	struct populate_job *j = arg;
	uint64_t t0 = now_ns();
	j->p = map_populated(j->len, j->huge, &j->what);
	if (!j->p)
		j->err = errno;
	j->ns = now_ns() - t0;
}

static void populate_done(napi_env env, napi_status status, void *arg)
{
	struct populate_job *j = arg;
	napi_value obj, buf, ns;
	if (status == napi_cancelled && !j->err) {
		if (j->p)
			munmap(j->p, j->len);
		j->p = NULL, j->err = ECANCELED, j->what = "allocPopulatedAsync";
	}
	if (j->err)
		napi_reject_deferred(env, j->deferred, bridge_errno_error(env, j->what, j->err, 0, NULL));
	else if ((buf = mapped_buffer(env, j->p, j->len)) && napi_create_object(env, &obj) == napi_ok &&
		 napi_create_double(env, (double)j->ns, &ns) == napi_ok &&
		 napi_set_named_property(env, obj, "buffer", buf) == napi_ok &&
		 napi_set_named_property(env, obj, "ns", ns) == napi_ok)
		napi_resolve_deferred(env, j->deferred, obj);
	else
		napi_reject_deferred(env, j->deferred,
				     bridge_errno_error(env, "napi_create_external_buffer", ENOMEM, 0, NULL));
	napi_delete_async_work(env, j->work);
	free(j);
}

/* allocPopulatedAsync(size, huge): allocPopulated on libuv's thread pool, so that memory
 * is populated on another CPU while the main thread copies pages (capture.ts' spare);
 * resolves to the buffer and the nanoseconds the populating took. */
static napi_value alloc_populated_async(napi_env env, napi_callback_info info)
{
	const char *fn = "allocPopulatedAsync";
	struct populate_job *j = calloc(1, sizeof(*j));
	if (!j)
		return bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
	if (!populated_args(env, info, fn, &j->len, &j->huge)) {
		free(j);
		return NULL;
	}
	napi_value promise = bridge_queue_job(env, fn, populate_run, populate_done, j, &j->work, &j->deferred);
	if (!promise)
		free(j);
	return promise;
}

void bridge_init_memory(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "processVmReadv", vm_readv },	       { "processVmReadvBatch", vm_readv_batch },
		{ "processVmWritev", vm_writev },      { "readProcMem", read_proc_mem },
		{ "writeProcMem", write_proc_mem },    { "allocAligned", alloc_aligned },
		{ "allocPopulated", alloc_populated }, { "allocPopulatedAsync", alloc_populated_async },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
