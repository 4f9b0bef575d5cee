/* What the two page fills (restore_pages.c: process_vm_writev, restore_uffd.c:
 * UFFDIO_COPY) share: the (address, file offset, length) triples checked and the
 * part of the pages file they cover mapped, the work shared out by bytes, and the
 * workers run on threads. */
#include "restore.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PAGE	  4096ULL
#define SEG_WORDS 3 /* remote address, file offset, length */

bool restore_fill_open(napi_env env, const char *fn, napi_value segs_v, napi_value threads_v, int pages_fd,
		       bool whole_pages, int pid, struct restore_fill *f)
{
	memset(f, 0, sizeof(*f));
	uint32_t nthreads = 2;
	if (!bridge_is_nullish(env, threads_v) &&
	    !bridge_arg_uint32(env, threads_v, &nthreads, fn, "threads must be a uint32"))
		return false;
	f->nthreads = nthreads < 1 ? 1 : nthreads > RESTORE_MAX_THREADS ? RESTORE_MAX_THREADS : nthreads;
	uint8_t *data;
	size_t len;
	if (!bridge_arg_bytes(env, segs_v, &data, &len, fn, "segments must be a BigUint64Array"))
		return false;
	if (len % (SEG_WORDS * 8) != 0) {
		bridge_throw_arg(env, fn, "segments must hold (address, offset, length) triples");
		return false;
	}
	f->nsegs = len / (SEG_WORDS * 8);
	if (f->nsegs == 0)
		return true;
	f->segs = malloc(f->nsegs * sizeof(*f->segs));
	f->parts = malloc((f->nsegs + f->nthreads) * sizeof(*f->parts));
	if (!f->segs || !f->parts) {
		restore_fill_close(f);
		bridge_throw_errno(env, "malloc", ENOMEM, pid, NULL);
		return false;
	}
	memcpy(f->segs, data, f->nsegs * sizeof(*f->segs));
	uint64_t lo = UINT64_MAX, hi = 0;
	for (size_t i = 0; i < f->nsegs; i++) {
		const struct restore_seg *s = &f->segs[i];
		if (s->len == 0 || s->off > UINT64_MAX - s->len || s->addr > UINT64_MAX - s->len) {
			restore_fill_close(f);
			bridge_throw_arg(env, fn, "a segment is empty or overflows");
			return false;
		}
		if (whole_pages && (s->len % PAGE || s->addr % PAGE)) {
			restore_fill_close(f);
			bridge_throw_arg(env, fn, "segments must be whole pages");
			return false;
		}
		lo = s->off < lo ? s->off : lo;
		hi = s->off + s->len > hi ? s->off + s->len : hi;
		f->total += s->len;
	}
	struct stat st;
	if (fstat(pages_fd, &st) < 0) {
		restore_fill_close(f);
		bridge_throw_errno(env, "fstat (pages file)", errno, pid, NULL);
		return false;
	}
	if (hi > (uint64_t)st.st_size) {
		restore_fill_close(f);
		char what[128];
		snprintf(what, sizeof(what), "%s: the pages file ends at %" PRIu64 ", data is wanted up to %" PRIu64,
			 fn, (uint64_t)st.st_size, hi);
		bridge_throw_errno(env, what, EIO, pid, NULL);
		return false;
	}
	f->base_off = lo & ~(PAGE - 1);
	f->map_len = (size_t)(hi - f->base_off);
	void *base = mmap(NULL, f->map_len, PROT_READ, MAP_SHARED, pages_fd, (off_t)f->base_off);
	if (base == MAP_FAILED) {
		int err = errno;
		restore_fill_close(f);
		bridge_throw_errno(env, "mmap (pages file)", err, pid, NULL);
		return false;
	}
	madvise(base, f->map_len, MADV_WILLNEED);
	f->base = base;
	return true;
}

void restore_fill_close(struct restore_fill *f)
{
	if (f->base)
		munmap((void *)f->base, f->map_len);
	free(f->segs);
	free(f->parts);
	memset(f, 0, sizeof(*f));
}

uint32_t restore_share(const struct restore_fill *f, void *workers, size_t size)
{
	uint32_t nthreads = f->nthreads;
	const struct restore_seg *segs = f->segs;
	size_t nsegs = f->nsegs;
	uint64_t total = f->total;
	struct restore_seg *parts = f->parts;
	uint64_t share = ((total / nthreads) + PAGE - 1) & ~(PAGE - 1);
	size_t np = 0, si = 0;
	uint64_t used = 0; /* bytes of segs[si] given to earlier workers */
	uint32_t nw = 0;
	for (uint32_t t = 0; t < nthreads && si < nsegs; t++, nw++) {
		struct restore_job *job = (struct restore_job *)((char *)workers + t * size);
		job->base = f->base;
		job->base_off = f->base_off;
		job->segs = parts + np;
		job->nsegs = 0;
		uint64_t room = t == nthreads - 1 ? UINT64_MAX : share;
		while (si < nsegs && room > 0) {
			struct restore_seg s = segs[si];
			s.addr += used;
			s.off += used;
			s.len -= used;
			if (s.len > room) {
				s.len = room;
				used += room;
			} else {
				used = 0;
				si++;
			}
			room -= s.len;
			parts[np++] = s;
			job->nsegs++;
		}
	}
	return nw;
}

void restore_run_workers(void *workers, size_t size, uint32_t n, void *(*fn)(void *))
{
	pthread_t th[RESTORE_MAX_THREADS];
	char *w = workers;
	uint32_t started = 0;
	for (uint32_t t = 1; t < n && t < RESTORE_MAX_THREADS; t++) {
		if (pthread_create(&th[t], NULL, fn, w + t * size) != 0)
			break;
		started = t;
	}
	fn(w);
	/* Threads that could not be started: their share runs here. */
	for (uint32_t t = started + 1; t < n; t++)
		fn(w + t * size);
	for (uint32_t t = 1; t <= started; t++)
		pthread_join(th[t], NULL);
}
