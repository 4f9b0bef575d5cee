/* The restore side of the host bridge: starting the stub with the dumped PID
 * (restore.c) in its time namespace (restore_timens.c), running syscalls inside
 * it from the trampoline page (restore_remote.c) and filling its memory from page
 * images (restore_fill.c, with restore_pages.c or restore_uffd.c). */
#ifndef TSCRIU_RESTORE_H
#define TSCRIU_RESTORE_H

#include "bridge.h"

/* A run of pages to fill: `len` bytes at task address `addr`, taken from offset
 * `off` of the pages file. */
struct restore_seg {
	uint64_t addr, off, len;
};

/* Most threads a page fill uses. */
#define RESTORE_MAX_THREADS 8

/* One worker's part of a page fill (the first member of each fill's worker
 * struct): its runs, read from the pages file mapped at `base` from file offset
 * `base_off`, and what it did. */
struct restore_job {
	const uint8_t *base;
	uint64_t base_off;
	struct restore_seg *segs;
	size_t nsegs;
	/* results */
	uint64_t bytes;
	int err;
	uint64_t err_addr;
};

/* The input of one page fill (restore_fill.c): the segments and the part of the
 * pages file they cover, mapped read-only. */
struct restore_fill {
	struct restore_seg *segs, *parts;
	size_t nsegs;
	uint32_t nthreads; /* 1..RESTORE_MAX_THREADS */
	uint64_t total;
	const uint8_t *base;
	uint64_t base_off;
	size_t map_len;
};

/* Takes (address, file offset, length) triples from a BigUint64Array and the thread
 * count (optional: 2; clamped to 1..RESTORE_MAX_THREADS), checks the triples (whole
 * pages when asked; none past the end of the pages file) and maps what they cover.
 * On false a JS exception is pending and nothing is held. */
bool restore_fill_open(napi_env env, const char *fn, napi_value segs_v, napi_value threads_v, int pages_fd,
		       bool whole_pages, int pid, struct restore_fill *f);
void restore_fill_close(struct restore_fill *f);

/* Shares the fill out among up to f->nthreads workers, laid out `size` bytes apart,
 * by bytes (shares of total/nthreads, page aligned), cutting a segment where a
 * share ends, and fills each worker's job. Returns the number of workers with work. */
uint32_t restore_share(const struct restore_fill *f, void *workers, size_t size);

/* Runs fn on n workers laid out `size` bytes apart: workers 1..n-1 on threads, worker 0
 * here; a worker whose thread cannot be started runs here too. Returns when all are done. */
void restore_run_workers(void *workers, size_t size, uint32_t n, void *(*fn)(void *));

/* Moves the calling process's future children (and its next exec) into a new time
 * namespace whose CLOCK_MONOTONIC and CLOCK_BOOTTIME go on from the given values
 * (those at dump time). Raw syscalls only. Returns 0, or -errno with *stage naming
 * the call that failed. */
long restore_enter_timens(int64_t mono_ns, int64_t boot_ns, const char **stage);

void bridge_init_restore_remote(napi_env env, napi_value exports);
void bridge_init_restore_pages(napi_env env, napi_value exports);
void bridge_init_restore_uffd(napi_env env, napi_value exports);

/* A raw syscall returning -errno: usable where errno (thread-local storage of
 * the calling thread) must not be touched, e.g. in a CLONE_VM child. */
static inline long restore_raw6(long nr, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#endif
