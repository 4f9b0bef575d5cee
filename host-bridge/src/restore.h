/* The restore side of the host bridge: starting the stub with the dumped PID
 * (restore.c), running syscalls inside it from the trampoline page
 * (restore_remote.c) and filling its memory from page images
 * (restore_pages.c). */
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

/* Shares segs out among up to nthreads workers by bytes (shares of total/nthreads,
 * page aligned), cutting a segment where a share ends. parts must hold
 * nsegs + nthreads entries; worker t gets parts[first[t]] .. + count[t].
 * Returns the number of workers with work. */
uint32_t restore_split(const struct restore_seg *segs, size_t nsegs, uint64_t total, uint32_t nthreads,
		       struct restore_seg *parts, size_t *first, size_t *count);

/* Runs fn on n workers laid out `size` bytes apart: workers 1..n-1 on threads, worker 0
 * here; a worker whose thread cannot be started runs here too. Returns when all are done. */
void restore_run_workers(void *workers, size_t size, uint32_t n, void *(*fn)(void *));

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
