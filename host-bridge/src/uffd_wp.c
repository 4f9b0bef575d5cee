/* A write-protect snapshot of a task's private anonymous memory.
 *
 * While the task is frozen its pages are write-protected through a userfaultfd of
 * its own (made inside it, taken with pidfd_getfd); then it runs again and tscriu
 * copies the pages out. A page the task writes before it was copied faults (sync
 * write-protect: the writer waits), a thread here copies it first and lets the write
 * go on; every page copied is unprotected right away. So the copy holds each page as
 * it was at the freeze, while the task stood still only to be protected.
 *
 * Two ways out: uffdSnapshotCopy copies into tscriu's buffers (the page server's
 * dump sends them after); uffdSnapshotStream writes straight into the pages file, each
 * run at its place, on threads of its own: no memory of the task's size is populated
 * (fresh memory is slow here), and reading overlaps writing. A page the task writes
 * first is then copied into a store of its own and written at the end.
 *
 * Page states: 0 not copied, 1 being copied (by one of the threads), 2 copied.
 *
 * Memory the task discards meanwhile (munmap, MADV_DONTNEED, mremap) cannot be held
 * back: the kernel goes on as soon as the event is read. So such an event over a page
 * not copied yet makes the copy fail, naming the address, rather than give that page's
 * later contents (zeros) as the frozen ones. */
#include "bridge.h"
#include "pagemap_scan.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#define PAGE	    4096ULL
#define RUN_PAGES   256
#define MAX_BUFFERS 4096
/* streaming: pages per read and write, and how many threads read and write */
#define STREAM_PAGES   512
#define STREAM_THREADS 3
/* at a write to a page not copied yet, the pages of its aligned block of FAULT_RUN not
 * taken yet that adjoin it are copied with it: a task that writes all over its memory
 * waits in a fault per block, not per page */
#define FAULT_RUN 16
/* pages written first held in memory (64 MiB), in blocks; beyond, written at once */
#define EARLY_BLOCK 512
#define EARLY_MAX   16384

struct wp_seg {
	uint64_t addr, len;
	uint8_t *dst;	/* copy: where its pages go */
	uint64_t foff;	/* stream: the file offset of its first page */
	uint64_t first; /* index of its first page in the state array */
};

struct wp_snap {
	int uffd, pid;
	int out; /* stream: the pages file (-1: copy into the segments' buffers) */
	struct wp_seg *segs;
	size_t nsegs;
	_Atomic uint8_t *state;
	atomic_bool stop;
	int err;	/* first error of the fault thread */
	uint64_t early; /* pages copied first because the task wrote them */
	uint64_t torn;	/* an address the task discarded before it was copied (0: none) */
	/* stream: the pages written first, held until the end (offsets in the file) */
	uint8_t *early_blocks[EARLY_MAX / EARLY_BLOCK];
	uint64_t *early_off;
	size_t held;
	size_t hold;   /* how many of them are held at most (<= EARLY_MAX) */
	uint8_t *page; /* FAULT_RUN aligned pages: a fault's run, read there */
	/* stream: the next page to claim, and the first error of the copiers */
	pthread_mutex_t lock;
	size_t cur_seg;
	uint64_t cur_page;
	atomic_bool failed;
	int copy_err;
	uint64_t copy_addr;
	const char *copy_what;
	_Atomic uint64_t bytes;
};

static int unprotect(int uffd, uint64_t addr, uint64_t len)
{
	struct uffdio_writeprotect wp = { { addr, len }, 0 };
	while (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
		if (errno != EAGAIN)
			return -1;
	}
	return 0;
}

/* [addr, addr + len) of the task into dst, whole, or -1 with errno. */
static int read_task(int pid, uint8_t *dst, uint64_t addr, uint64_t len)
{
	struct iovec l = { dst, len };
	struct iovec r = { (void *)(uintptr_t)addr, len };
	uint64_t done = 0;
	while (done < len) {
		ssize_t n = process_vm_readv(pid, &l, 1, &r, 1, 0);
		if (n <= 0)
			return n < 0 ? -1 : (errno = EFAULT, -1);
		done += (uint64_t)n;
		l.iov_base = (uint8_t *)l.iov_base + n;
		l.iov_len -= (size_t)n;
		r.iov_base = (uint8_t *)r.iov_base + n;
		r.iov_len -= (size_t)n;
	}
	return 0;
}

static int pwrite_all(int fd, const uint8_t *buf, uint64_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -1 : (errno = EIO, -1);
		buf += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int copy_run(struct wp_snap *s, struct wp_seg *g, uint64_t addr, uint64_t len)
{
	return read_task(s->pid, g->dst + (addr - g->addr), addr, len);
}

/* Stream: n pages from addr, the task about to write one of them, copied before the write
 * goes on; held in memory (written at the end) while there is room, else written now. */
static int copy_early(struct wp_snap *s, struct wp_seg *g, uint64_t addr, uint64_t n)
{
	uint64_t off = g->foff + (addr - g->addr);
	if (read_task(s->pid, s->page, addr, n * PAGE) < 0)
		return -1;
	if (s->held + n > s->hold)
		return pwrite_all(s->out, s->page, n * PAGE, off);
	for (uint64_t i = 0; i < n; i++) {
		size_t b = s->held / EARLY_BLOCK;
		if (!s->early_blocks[b] && posix_memalign((void **)&s->early_blocks[b], PAGE, EARLY_BLOCK * PAGE))
			return errno = ENOMEM, -1;
		memcpy(s->early_blocks[b] + (s->held % EARLY_BLOCK) * PAGE, s->page + i * PAGE, PAGE);
		s->early_off[s->held++] = off + i * PAGE;
	}
	return 0;
}

static struct wp_seg *find_seg(struct wp_snap *s, uint64_t addr)
{
	size_t lo = 0, hi = s->nsegs;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (s->segs[mid].addr + s->segs[mid].len <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < s->nsegs && s->segs[lo].addr <= addr)
		return &s->segs[lo];
	return NULL;
}

/* The fault thread reads the userfaultfd: its faults and its events, which the task waits on. */
#define PEND_MAX 256
struct fault_queue {
	uint64_t addr[PEND_MAX];
	size_t n;
};

/* An event the task waits on until it is read (memory it gives back): a page of it not
 * copied yet makes the snapshot torn. */
static void discarded(struct wp_snap *s, const struct uffd_msg *m)
{
	uint64_t start = m->event == UFFD_EVENT_REMAP ? m->arg.remap.from : m->arg.remove.start;
	uint64_t end = m->event == UFFD_EVENT_REMAP ? m->arg.remap.from + m->arg.remap.len : m->arg.remove.end;
	for (uint64_t a = start; a < end && !s->torn; a += PAGE) {
		struct wp_seg *g = find_seg(s, a);
		if (g && atomic_load(&s->state[g->first + (a - g->addr) / PAGE]) != 2)
			s->torn = a;
	}
}

/* Unprotects from the fault thread. The kernel refuses (EAGAIN) while an event waits to be
 * read, and this thread is its reader: the events are read meanwhile, faults queued (one
 * that does not fit is woken when its page is copied, or at the end). */
static int unprotect_here(struct wp_snap *s, uint64_t addr, uint64_t len, struct fault_queue *q)
{
	struct uffdio_writeprotect wp = { { addr, len }, 0 };
	while (ioctl(s->uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
		if (errno != EAGAIN)
			return -1;
		struct uffd_msg m;
		if (read(s->uffd, &m, sizeof(m)) != (ssize_t)sizeof(m))
			continue;
		if (m.event == UFFD_EVENT_PAGEFAULT) {
			if (q->n < PEND_MAX)
				q->addr[q->n++] = m.arg.pagefault.address;
		} else if (m.event == UFFD_EVENT_REMOVE || m.event == UFFD_EVENT_UNMAP || m.event == UFFD_EVENT_REMAP) {
			discarded(s, &m);
		}
	}
	return 0;
}

/* A write to a page not copied yet: copies it (with its block), then lets it go. */
static void fault(struct wp_snap *s, uint64_t fault_addr, struct fault_queue *q)
{
	uint64_t addr = fault_addr & ~(PAGE - 1);
	struct wp_seg *g = find_seg(s, addr);
	if (g) {
		_Atomic uint8_t *st = &s->state[g->first + (addr - g->addr) / PAGE];
		uint8_t zero = 0;
		if (atomic_compare_exchange_strong(st, &zero, 1)) {
			/* with the pages of its block that adjoin it and nobody took */
			uint64_t idx = (addr - g->addr) / PAGE, n = g->len / PAGE;
			uint64_t blk = idx - idx % FAULT_RUN, blk_end = blk + FAULT_RUN < n ? blk + FAULT_RUN : n;
			uint64_t lo = idx, hi = idx + 1;
			while (lo > blk) {
				uint8_t z = 0;
				if (!atomic_compare_exchange_strong(&s->state[g->first + lo - 1], &z, 1))
					break;
				lo--;
			}
			while (hi < blk_end) {
				uint8_t z = 0;
				if (!atomic_compare_exchange_strong(&s->state[g->first + hi], &z, 1))
					break;
				hi++;
			}
			uint64_t from = g->addr + lo * PAGE;
			int rc = s->out < 0 ? copy_run(s, g, from, (hi - lo) * PAGE) : copy_early(s, g, from, hi - lo);
			if (rc < 0 && !s->err)
				s->err = errno;
			for (uint64_t k = lo; k < hi; k++)
				atomic_store(&s->state[g->first + k], 2);
			s->early += hi - lo;
			/* unprotects the run, and wakes the writer */
			if (unprotect_here(s, from, (hi - lo) * PAGE, q) < 0 && !s->err)
				s->err = errno;
			return;
		}
		while (atomic_load(st) != 2)
			sched_yield();
	}
	/* unprotects and wakes the writer (again, if the copier did already) */
	if (unprotect_here(s, addr, PAGE, q) < 0 && !s->err)
		s->err = errno;
}

/* The fault thread: faults and events, until the copy is done. */
static void *faults(void *arg)
{
	struct wp_snap *s = arg;
	struct fault_queue q = { .n = 0 };
	while (!atomic_load(&s->stop)) {
		if (q.n > 0) {
			uint64_t a = q.addr[--q.n];
			fault(s, a, &q);
			continue;
		}
		struct pollfd p = { s->uffd, POLLIN, 0 };
		int r = poll(&p, 1, 20);
		if (r <= 0)
			continue;
		struct uffd_msg m;
		if (read(s->uffd, &m, sizeof(m)) != (ssize_t)sizeof(m))
			continue;
		if (m.event == UFFD_EVENT_REMOVE || m.event == UFFD_EVENT_UNMAP || m.event == UFFD_EVENT_REMAP)
			discarded(s, &m);
		else if (m.event == UFFD_EVENT_PAGEFAULT)
			fault(s, m.arg.pagefault.address, &q);
	}
	return NULL;
}

/* Protecting a task's memory on the thread pool: the page tables of 1 GiB take 12-40 ms
 * on these VMs, which the dump spends on the task's other state meanwhile. Past
 * PROTECT_SPLIT bytes the protection is cut in two halves, the second on a thread of its
 * own: UFFDIO_WRITEPROTECT holds the address space for reading only, and two halves of
 * 1 GiB took 30-33 ms here against 41-43 for the whole on one thread. */
#define PROTECT_SPLIT (64ULL << 20)

struct protect_job {
	napi_async_work work;
	napi_deferred deferred;
	int fd;
	uint64_t *r; /* (start, length) pairs */
	size_t n;
	/* armed ahead (uffdWpArm): the task runs, so a range it unmapped meanwhile is passed
	 * over and EAGAIN (an event read by the armed thread) tried again */
	bool ahead;
	int pid;	  /* rearm: the task */
	uint64_t written; /* rearm: pages found unprotected and protected */
	int err;
	char msg[128];
};

/* One thread's share of the protection: the bytes [from, to) of the ranges, counted
 * across them in order. */
struct protect_half {
	struct protect_job *j;
	uint64_t from, to;
	int err;
	char msg[128];
};

static void *protect_bytes(void *arg)
{
	struct protect_half *h = arg;
	uint64_t at = 0;
	for (size_t i = 0; i < h->j->n && at < h->to; i++) {
		uint64_t start = h->j->r[2 * i], len = h->j->r[2 * i + 1];
		uint64_t lo = h->from > at ? h->from - at : 0, hi = h->to - at < len ? h->to - at : len;
		at += len;
		if (lo >= hi)
			continue;
		struct uffdio_writeprotect wp = { { start + lo, hi - lo }, UFFDIO_WRITEPROTECT_MODE_WP };
		int r;
		while ((r = ioctl(h->j->fd, UFFDIO_WRITEPROTECT, &wp)) < 0 && h->j->ahead && errno == EAGAIN)
			sched_yield();
		if (r < 0 && h->j->ahead)
			continue;
		if (r < 0) {
			h->err = errno;
			snprintf(h->msg, sizeof(h->msg), "ioctl(UFFDIO_WRITEPROTECT) of 0x%" PRIx64 "+0x%" PRIx64,
				 start + lo, hi - lo);
			break;
		}
	}
	return NULL;
}

/* UFFDIO_API with write-protect faults (and the events of memory given back). */
static bool handshake(struct protect_job *j)
{
	struct uffdio_api api;
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	api.features = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |
		       UFFD_FEATURE_EVENT_REMAP;
	if (ioctl(j->fd, UFFDIO_API, &api) < 0) {
		j->err = errno;
		snprintf(j->msg, sizeof(j->msg), "ioctl(UFFDIO_API, UFFD_FEATURE_PAGEFAULT_FLAG_WP)");
		return false;
	}
	return true;
}

/* Each range registered for write-protect faults; ahead of the freeze, a range that no
 * longer is one VMA of the kind is left out (its length set to 0). Returns the bytes. */
static uint64_t register_ranges(struct protect_job *j)
{
	uint64_t total = 0;
	for (size_t i = 0; i < j->n; i++) {
		struct uffdio_register rg;
		memset(&rg, 0, sizeof(rg));
		rg.range.start = j->r[2 * i];
		rg.range.len = j->r[2 * i + 1];
		rg.mode = UFFDIO_REGISTER_MODE_WP;
		if (ioctl(j->fd, UFFDIO_REGISTER, &rg) < 0) {
			if (j->ahead) {
				j->r[2 * i + 1] = 0;
				continue;
			}
			j->err = errno;
			snprintf(j->msg, sizeof(j->msg), "ioctl(UFFDIO_REGISTER, MODE_WP) of 0x%" PRIx64 "+0x%" PRIx64,
				 j->r[2 * i], j->r[2 * i + 1]);
			return total;
		}
		total += j->r[2 * i + 1];
	}
	return total;
}

/* The registered ranges protected, in two halves at once past PROTECT_SPLIT. */
static void protect_halves(struct protect_job *j, uint64_t total)
{
	uint64_t mid = total > PROTECT_SPLIT ? total / 2 / PAGE * PAGE : total;
	struct protect_half a = { .j = j, .from = 0, .to = mid }, b = { .j = j, .from = mid, .to = total };
	pthread_t th;
	int threaded = mid < total && pthread_create(&th, NULL, protect_bytes, &b) == 0;
	protect_bytes(&a);
	if (mid < total) {
		if (threaded)
			pthread_join(th, NULL);
		else
			protect_bytes(&b);
	}
	struct protect_half *bad = a.err ? &a : b.err ? &b : NULL;
	if (bad) {
		j->err = bad->err;
		memcpy(j->msg, bad->msg, sizeof(j->msg));
	}
}

static void protect_run(napi_env env, void *arg)
{
	(void)env;
	struct protect_job *j = arg;
	if (!handshake(j))
		return;
	uint64_t total = register_ranges(j);
	if (!j->err)
		protect_halves(j, total);
}

/* Settles a protect job's promise: rejected naming the ioctl and range; resolved to
 * nothing, or for a rearm (which has the task's pid) to the pages it protected. */
static void protect_done(napi_env env, napi_status status, void *arg)
{
	struct protect_job *j = arg;
	napi_value v;
	if (status == napi_cancelled && !j->err) {
		j->err = ECANCELED;
		snprintf(j->msg, sizeof(j->msg), "the protection's job");
	}
	if (j->err)
		napi_reject_deferred(env, j->deferred, bridge_errno_error(env, j->msg, j->err, j->pid, NULL));
	else if ((j->pid ? napi_create_double(env, (double)j->written, &v) : napi_get_undefined(env, &v)) == napi_ok)
		napi_resolve_deferred(env, j->deferred, v);
	napi_delete_async_work(env, j->work);
	free(j->r);
	free(j);
}

/* The calls that protect on the thread pool: (fd, [pid,] ranges) read, and a job of
 * `execute` queued with them; its promise. */
static napi_value queue_protect(napi_env env, napi_callback_info info, const char *fn, bool with_pid, bool ahead,
				napi_async_execute_callback execute, napi_async_complete_callback complete)
{
	size_t nargs = with_pid ? 3 : 2;
	napi_value argv[3];
	int32_t fd, pid = 0;
	uint64_t *r;
	size_t n;
	if (!bridge_get_args(env, info, nargs, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a userfaultfd") ||
	    (with_pid && !bridge_arg_pid(env, argv[1], &pid, fn)) ||
	    !bridge_arg_u64s(env, argv[nargs - 1], &r, &n, 2, fn,
			     "ranges must be a BigUint64Array of (start, length) pairs"))
		return NULL;
	struct protect_job *j = calloc(1, sizeof(*j));
	if (!j || !(j->r = malloc(n ? n * 16 : 16))) {
		free(j);
		return bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
	}
	memcpy(j->r, r, n * 16);
	j->n = n;
	j->fd = fd;
	j->pid = pid;
	j->ahead = ahead;
	napi_value promise = bridge_queue_job(env, fn, execute, complete, j, &j->work, &j->deferred);
	if (!promise) {
		free(j->r);
		free(j);
	}
	return promise;
}

/* uffdWriteProtect(fd, ranges): on the thread pool, UFFDIO_API with write-protect
 * faults, then each (start, length) registered for write-protect and protected;
 * resolves when done, rejects naming the ioctl and range that failed. */
static napi_value uffd_write_protect(napi_env env, napi_callback_info info)
{
	return queue_protect(env, info, "uffdWriteProtect", false, false, protect_run, protect_done);
}

/* Armed ahead of the freeze (uffdWpArm, uffdWpRearm, uffdWpDisarm).
 *
 * Protecting 1 GiB holds the page tables for 30-40 ms on these VMs. Done while the task
 * still runs, that costs it only a fault at each first write to a page, which a thread
 * here serves by unprotecting the page (nothing is copied yet: the snapshot's instant is
 * the freeze). Once the task is frozen, rearm stops that thread, registers the ranges of
 * the frozen task (a VMA mapped since is registered now; one registered already stays),
 * asks PAGEMAP_SCAN which present pages of them are not protected (written meanwhile,
 * faulted in fresh, or in a VMA new to the registration) and protects just those: every
 * page the snapshot will copy is protected at the instant, as if protected then. */

#define ARM_MAX 64

struct wp_arm {
	int uffd;
	int wake; /* eventfd: the thread stops once it has read what is pending */
	pthread_t th;
	atomic_bool stop;
};

static struct wp_arm *arms[ARM_MAX];
static pthread_mutex_t arms_lock = PTHREAD_MUTEX_INITIALIZER;

/* Unprotects a page a fault waits on (nothing copied yet) and wakes the writer. EAGAIN: an
 * event waits to be read, read here meanwhile (faults queued). A page that cannot be
 * unprotected (its VMA went) has its writer woken all the same, to fault again. */
static void arm_unprotect(struct wp_arm *a, uint64_t addr, struct fault_queue *q)
{
	struct uffdio_writeprotect wp = { { addr & ~(PAGE - 1), PAGE }, 0 };
	int r;
	while ((r = ioctl(a->uffd, UFFDIO_WRITEPROTECT, &wp)) < 0 && errno == EAGAIN) {
		struct uffd_msg m;
		if (read(a->uffd, &m, sizeof(m)) == (ssize_t)sizeof(m) && m.event == UFFD_EVENT_PAGEFAULT &&
		    q->n < PEND_MAX)
			q->addr[q->n++] = m.arg.pagefault.address;
	}
	if (r < 0) {
		struct uffdio_range w = { addr & ~(PAGE - 1), PAGE };
		ioctl(a->uffd, UFFDIO_WAKE, &w);
	}
}

/* The armed thread: faults unprotected, events read, until stopped and nothing is pending. */
static void *arm_serve(void *arg)
{
	struct wp_arm *a = arg;
	struct fault_queue q = { .n = 0 };
	for (;;) {
		if (q.n > 0) {
			arm_unprotect(a, q.addr[--q.n], &q);
			continue;
		}
		bool stopping = atomic_load(&a->stop);
		struct pollfd p[2] = { { a->uffd, POLLIN, 0 }, { a->wake, POLLIN, 0 } };
		int r = poll(p, stopping ? 1 : 2, stopping ? 0 : -1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || (r == 0 && stopping) || (p[0].revents & (POLLERR | POLLNVAL)))
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		struct uffd_msg m;
		if (read(a->uffd, &m, sizeof(m)) != (ssize_t)sizeof(m))
			continue;
		if (m.event == UFFD_EVENT_PAGEFAULT)
			arm_unprotect(a, m.arg.pagefault.address, &q);
	}
	return NULL;
}

/* Takes the armed state of `uffd` out of the table (NULL: none). */
static struct wp_arm *arm_take(int uffd)
{
	struct wp_arm *a = NULL;
	pthread_mutex_lock(&arms_lock);
	for (int i = 0; i < ARM_MAX && !a; i++) {
		if (arms[i] && arms[i]->uffd == uffd) {
			a = arms[i];
			arms[i] = NULL;
		}
	}
	pthread_mutex_unlock(&arms_lock);
	return a;
}

/* Stops the armed thread once it has read what is pending, and frees its state. */
static void arm_stop(struct wp_arm *a)
{
	if (!a)
		return;
	atomic_store(&a->stop, true);
	uint64_t one = 1;
	if (write(a->wake, &one, sizeof(one)) < 0) {
		/* an eventfd write fails only past its maximum; the poll sees it readable anyway */
	}
	pthread_join(a->th, NULL);
	close(a->wake);
	free(a);
}

/* The armed thread started for `uffd` and put in the table; an errno on failure. */
static int arm_start(int uffd)
{
	struct wp_arm *a = calloc(1, sizeof(*a));
	if (!a)
		return ENOMEM;
	a->uffd = uffd;
	atomic_init(&a->stop, false);
	a->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (a->wake < 0) {
		int e = errno;
		free(a);
		return e;
	}
	pthread_mutex_lock(&arms_lock);
	int slot = -1;
	for (int i = 0; i < ARM_MAX && slot < 0; i++) {
		if (!arms[i])
			slot = i;
	}
	int err = slot < 0 ? EMFILE : pthread_create(&a->th, NULL, arm_serve, a);
	if (!err)
		arms[slot] = a;
	pthread_mutex_unlock(&arms_lock);
	if (err) {
		close(a->wake);
		free(a);
	}
	return err;
}

static void arm_run(napi_env env, void *arg)
{
	(void)env;
	struct protect_job *j = arg;
	if (!handshake(j))
		return;
	/* the thread first: the task writes while its pages are being protected */
	int err = arm_start(j->fd);
	if (err) {
		j->err = err;
		snprintf(j->msg, sizeof(j->msg), "starting the thread that serves the armed write faults");
		return;
	}
	protect_halves(j, register_ranges(j));
}

/* uffdWpArm(fd, ranges): on the thread pool, with the task running, the handshake, a
 * thread that serves its write faults until uffdWpRearm or uffdWpDisarm, then each range
 * registered and protected (those the task unmapped meanwhile passed over). */
static napi_value uffd_wp_arm(napi_env env, napi_callback_info info)
{
	return queue_protect(env, info, "uffdWpArm", false, true, arm_run, protect_done);
}

/* The task frozen: the armed thread stopped, the ranges registered, and the present pages
 * of them that are not protected found by PAGEMAP_SCAN and protected. */
static void rearm_run(napi_env env, void *arg)
{
	(void)env;
	struct protect_job *j = arg;
	arm_stop(arm_take(j->fd));
	register_ranges(j);
	if (j->err)
		return;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/pagemap", j->pid);
	int pm = open(path, O_RDONLY | O_CLOEXEC);
	if (pm < 0) {
		j->err = errno == ENOENT ? ESRCH : errno;
		snprintf(j->msg, sizeof(j->msg), "open(%s)", path);
		return;
	}
	struct page_region vec[512];
	for (size_t i = 0; i < j->n && !j->err; i++) {
		struct pm_scan_arg sa;
		memset(&sa, 0, sizeof(sa));
		sa.size = sizeof(sa);
		sa.start = j->r[2 * i];
		sa.end = j->r[2 * i] + j->r[2 * i + 1];
		sa.vec = (uint64_t)(uintptr_t)vec;
		sa.vec_len = sizeof(vec) / sizeof(vec[0]);
		sa.category_mask = PAGE_IS_WRITTEN;
		sa.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
		sa.return_mask = PAGE_IS_WRITTEN;
		while (sa.start < sa.end && !j->err) {
			int got = ioctl(pm, PAGEMAP_SCAN, &sa);
			if (got < 0) {
				j->err = errno;
				snprintf(j->msg, sizeof(j->msg), "ioctl(PAGEMAP_SCAN) of %s", path);
				break;
			}
			for (int k = 0; k < got && !j->err; k++) {
				struct uffdio_writeprotect wp = { { vec[k].start, vec[k].end - vec[k].start },
								  UFFDIO_WRITEPROTECT_MODE_WP };
				if (ioctl(j->fd, UFFDIO_WRITEPROTECT, &wp) < 0) {
					j->err = errno;
					snprintf(j->msg, sizeof(j->msg),
						 "ioctl(UFFDIO_WRITEPROTECT) of 0x%" PRIx64 "+0x%" PRIx64, vec[k].start,
						 vec[k].end - vec[k].start);
				}
				j->written += (vec[k].end - vec[k].start) / PAGE;
			}
			if (sa.walk_end <= sa.start)
				break;
			sa.start = sa.walk_end;
		}
	}
	close(pm);
}

/* uffdWpRearm(fd, pid, ranges): see above; resolves to the pages protected now. */
static napi_value uffd_wp_rearm(napi_env env, napi_callback_info info)
{
	return queue_protect(env, info, "uffdWpRearm", true, false, rearm_run, protect_done);
}

/* uffdWpDisarm(fd): stops the armed thread of `fd` (its pending faults unprotected first);
 * whether there was one. The ranges stay registered: unregister, then close. */
static napi_value uffd_wp_disarm(napi_env env, napi_callback_info info)
{
	const char *fn = "uffdWpDisarm";
	napi_value argv[1], v;
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a userfaultfd"))
		return NULL;
	struct wp_arm *a = arm_take(fd);
	arm_stop(a);
	napi_get_boolean(env, a != NULL, &v);
	return v;
}

/* uffdSnapshotCopy(fd, pid, segments, buffers): copies (addr, length, buffer index,
 * offset) quads of the running task into buffers[index] at offset, pages the task
 * writes first; unprotects each page once copied. Returns { bytes, early }. */
static napi_value uffd_snapshot_copy(napi_env env, napi_callback_info info)
{
	const char *fn = "uffdSnapshotCopy";
	napi_value argv[4];
	int32_t fd, pid;
	uint8_t *data;
	size_t len;
	uint32_t nbufs = 0;
	bool isarr = false;
	if (!bridge_get_args(env, info, 4, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a userfaultfd") ||
	    !bridge_arg_pid(env, argv[1], &pid, fn) ||
	    !bridge_arg_bytes(env, argv[2], &data, &len, fn, "segments must be a BigUint64Array of quads") ||
	    napi_is_array(env, argv[3], &isarr) != napi_ok || !isarr ||
	    napi_get_array_length(env, argv[3], &nbufs) != napi_ok || nbufs > MAX_BUFFERS)
		return bridge_throw_arg(env, fn, "buffers must be an array of Buffers");
	if (len % 32)
		return bridge_throw_arg(env, fn,
					"segments must be a BigUint64Array of (addr, length, buffer, offset) quads");
	uint8_t *bufs[MAX_BUFFERS];
	size_t blen[MAX_BUFFERS];
	for (uint32_t i = 0; i < nbufs; i++) {
		napi_value b;
		if (napi_get_element(env, argv[3], i, &b) != napi_ok ||
		    !bridge_arg_bytes(env, b, &bufs[i], &blen[i], fn, "buffers must be an array of Buffers"))
			return NULL;
	}
	const uint64_t *q = (const uint64_t *)(const void *)data;
	size_t nsegs = len / 32;
	struct wp_seg *segs = calloc(nsegs ? nsegs : 1, sizeof(*segs));
	if (!segs)
		return bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
	uint64_t pages = 0;
	for (size_t i = 0; i < nsegs; i++) {
		uint64_t a = q[4 * i], l = q[4 * i + 1], bi = q[4 * i + 2], off = q[4 * i + 3];
		if (a % PAGE || l % PAGE || bi >= nbufs || off > blen[bi] || l > blen[bi] - off ||
		    (i > 0 && a < segs[i - 1].addr + segs[i - 1].len)) {
			free(segs);
			return bridge_throw_arg(env, fn, "a segment is unaligned, out of its buffer or out of order");
		}
		segs[i] = (struct wp_seg){ a, l, bufs[bi] + off, 0, pages };
		pages += l / PAGE;
	}
	struct wp_snap s = { .uffd = fd, .pid = pid, .out = -1, .segs = segs, .nsegs = nsegs };
	s.state = calloc(pages ? pages : 1, 1);
	if (!s.state) {
		free(segs);
		return bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
	}
	atomic_init(&s.stop, false);
	pthread_t th;
	int perr = pthread_create(&th, NULL, faults, &s);
	if (perr) {
		free((void *)s.state);
		free(segs);
		return bridge_throw_errno(env, "pthread_create", perr, 0, NULL);
	}
	int err = 0;
	uint64_t err_addr = 0, bytes = 0;
	for (size_t i = 0; i < nsegs && !err; i++) {
		struct wp_seg *g = &segs[i];
		uint64_t n = g->len / PAGE;
		for (uint64_t p = 0; p < n && !err;) {
			/* claim a run of pages the fault thread has not taken */
			uint64_t k = 0;
			while (p + k < n && k < RUN_PAGES) {
				uint8_t zero = 0;
				if (!atomic_compare_exchange_strong(&s.state[g->first + p + k], &zero, 1))
					break;
				k++;
			}
			if (k == 0) {
				p++;
				continue;
			}
			uint64_t addr = g->addr + p * PAGE;
			if (copy_run(&s, g, addr, k * PAGE) < 0) {
				err = errno;
				err_addr = addr;
			}
			for (uint64_t j = 0; j < k; j++)
				atomic_store(&s.state[g->first + p + j], 2);
			if (!err && unprotect(fd, addr, k * PAGE) < 0) {
				err = errno;
				err_addr = addr;
			}
			bytes += k * PAGE;
			p += k;
		}
	}
	atomic_store(&s.stop, true);
	pthread_join(th, NULL);
	if (!err && s.err)
		err = s.err;
	if (!err && s.torn) {
		free((void *)s.state);
		free(segs);
		char msg[160];
		snprintf(msg, sizeof(msg),
			 "write-protect snapshot: the task discarded memory at 0x%" PRIx64
			 " (munmap, MADV_DONTNEED or mremap) before it was copied",
			 s.torn);
		return bridge_throw_errno(env, msg, EAGAIN, pid, NULL);
	}
	free((void *)s.state);
	free(segs);
	if (err) {
		char msg[96];
		snprintf(msg, sizeof(msg), "write-protect snapshot at 0x%" PRIx64, err_addr);
		return bridge_throw_errno(env, msg, err, pid, NULL);
	}
	napi_value res, v;
	napi_create_object(env, &res);
	napi_create_double(env, (double)bytes, &v);
	napi_set_named_property(env, res, "bytes", v);
	napi_create_double(env, (double)s.early, &v);
	napi_set_named_property(env, res, "early", v);
	return res;
}

/* Stream: the next run of pages nobody has taken (at most STREAM_PAGES, contiguous). */
static bool claim(struct wp_snap *s, struct wp_seg **gp, uint64_t *pp, uint64_t *kp)
{
	pthread_mutex_lock(&s->lock);
	for (; s->cur_seg < s->nsegs; s->cur_seg++, s->cur_page = 0) {
		struct wp_seg *g = &s->segs[s->cur_seg];
		uint64_t n = g->len / PAGE;
		while (s->cur_page < n) {
			uint64_t p = s->cur_page, k = 0;
			while (p + k < n && k < STREAM_PAGES) {
				uint8_t zero = 0;
				if (!atomic_compare_exchange_strong(&s->state[g->first + p + k], &zero, 1))
					break;
				k++;
			}
			if (k == 0) {
				s->cur_page++;
				continue;
			}
			s->cur_page = p + k;
			pthread_mutex_unlock(&s->lock);
			*gp = g;
			*pp = p;
			*kp = k;
			return true;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return false;
}

static void stream_fail(struct wp_snap *s, int err, uint64_t addr, const char *what)
{
	pthread_mutex_lock(&s->lock);
	if (!s->copy_err) {
		s->copy_err = err;
		s->copy_addr = addr;
		s->copy_what = what;
	}
	pthread_mutex_unlock(&s->lock);
	atomic_store(&s->failed, true);
}

/* A copier: reads a run, lets the task write it again, writes it at its place in the file. */
static void *stream_copier(void *arg)
{
	struct wp_snap *s = arg;
	uint8_t *buf;
	if (posix_memalign((void **)&buf, PAGE, STREAM_PAGES * PAGE)) {
		stream_fail(s, ENOMEM, 0, "posix_memalign");
		return NULL;
	}
	struct wp_seg *g;
	uint64_t p, k;
	while (!atomic_load(&s->failed) && claim(s, &g, &p, &k)) {
		uint64_t addr = g->addr + p * PAGE;
		int rc = read_task(s->pid, buf, addr, k * PAGE);
		int err = errno;
		for (uint64_t j = 0; j < k; j++)
			atomic_store(&s->state[g->first + p + j], 2);
		if (rc < 0) {
			stream_fail(s, err, addr, "process_vm_readv");
			break;
		}
		if (unprotect(s->uffd, addr, k * PAGE) < 0) {
			stream_fail(s, errno, addr, "ioctl(UFFDIO_WRITEPROTECT)");
			break;
		}
		if (pwrite_all(s->out, buf, k * PAGE, g->foff + p * PAGE) < 0) {
			stream_fail(s, errno, addr, "pwrite");
			break;
		}
		atomic_fetch_add(&s->bytes, k * PAGE);
	}
	free(buf);
	return NULL;
}

/* The pages the task wrote first, at their places, through the page cache (a 4 KiB
 * O_DIRECT write each would wait for the disk); the copiers' writes are all done. */
static int write_early(struct wp_snap *s)
{
	if (s->held == 0)
		return 0;
	char path[40];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", s->out);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	for (size_t i = 0; i < s->held; i++) {
		if (pwrite_all(fd, s->early_blocks[i / EARLY_BLOCK] + (i % EARLY_BLOCK) * PAGE, PAGE, s->early_off[i]) <
		    0) {
			int err = errno;
			close(fd);
			return errno = err, -1;
		}
	}
	return close(fd);
}

struct stream_job {
	napi_async_work work;
	napi_deferred deferred;
	struct wp_snap s;
};

static void stream_job_run(napi_env env, void *arg)
{
	(void)env;
	struct wp_snap *s = &((struct stream_job *)arg)->s;
	pthread_t fault_th, th[STREAM_THREADS - 1];
	int perr = pthread_create(&fault_th, NULL, faults, s);
	if (perr) {
		stream_fail(s, perr, 0, "pthread_create");
		return;
	}
	size_t started = 0;
	for (; started < STREAM_THREADS - 1; started++) {
		perr = pthread_create(&th[started], NULL, stream_copier, s);
		if (perr)
			break; /* fewer copiers: slower, not wrong */
	}
	stream_copier(s);
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	atomic_store(&s->stop, true);
	pthread_join(fault_th, NULL);
	if (!s->copy_err && s->err)
		stream_fail(s, s->err, 0, "the write fault of a page not copied yet");
	if (!s->copy_err && !s->torn && write_early(s) < 0)
		stream_fail(s, errno, 0, "pwrite of the pages written first");
}

static void stream_job_free(struct stream_job *j)
{
	struct wp_snap *s = &j->s;
	for (size_t i = 0; i < EARLY_MAX / EARLY_BLOCK; i++)
		free(s->early_blocks[i]);
	free(s->early_off);
	free(s->page);
	free((void *)s->state);
	free(s->segs);
	pthread_mutex_destroy(&s->lock);
	free(j);
}

static void stream_job_done(napi_env env, napi_status status, void *arg)
{
	struct stream_job *j = arg;
	struct wp_snap *s = &j->s;
	if (status == napi_cancelled) {
		napi_reject_deferred(env, j->deferred,
				     bridge_errno_error(env, "uffdSnapshotStream", ECANCELED, 0, NULL));
	} else if (s->copy_err) {
		char msg[160];
		snprintf(msg, sizeof(msg), "write-protect snapshot: %s at 0x%" PRIx64, s->copy_what, s->copy_addr);
		napi_reject_deferred(env, j->deferred, bridge_errno_error(env, msg, s->copy_err, s->pid, NULL));
	} else if (s->torn) {
		char msg[160];
		snprintf(msg, sizeof(msg),
			 "write-protect snapshot: the task discarded memory at 0x%" PRIx64
			 " (munmap, MADV_DONTNEED or mremap) before it was copied",
			 s->torn);
		napi_reject_deferred(env, j->deferred, bridge_errno_error(env, msg, EAGAIN, s->pid, NULL));
	} else {
		napi_value res, v;
		napi_create_object(env, &res);
		napi_create_double(env, (double)atomic_load(&s->bytes), &v);
		napi_set_named_property(env, res, "bytes", v);
		napi_create_double(env, (double)s->early, &v);
		napi_set_named_property(env, res, "early", v);
		napi_resolve_deferred(env, j->deferred, res);
	}
	napi_delete_async_work(env, j->work);
	stream_job_free(j);
}

/* uffdSnapshotStream(fd, pid, segments, out[, hold]): with the task running, writes
 * each (addr, length, file offset) triple of its memory into the file `out` at that
 * offset, on threads of its own; pages the task writes first are copied first (at most
 * `hold` of them held in memory, EARLY_MAX by default). Resolves to { bytes, early }. */
static napi_value uffd_snapshot_stream(napi_env env, napi_callback_info info)
{
	const char *fn = "uffdSnapshotStream";
	napi_value argv[5];
	int32_t fd, pid, out;
	uint32_t hold = EARLY_MAX;
	uint64_t *q;
	size_t nsegs;
	if (!bridge_get_args_range(env, info, 4, 5, argv, NULL, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a userfaultfd") ||
	    !bridge_arg_pid(env, argv[1], &pid, fn) ||
	    !bridge_arg_u64s(env, argv[2], &q, &nsegs, 3, fn,
			     "segments must be a BigUint64Array of (addr, length, file offset) triples") ||
	    !bridge_arg_fd(env, argv[3], &out, fn, "out must be the pages file's fd") ||
	    (!bridge_is_nullish(env, argv[4]) &&
	     !bridge_arg_uint32(env, argv[4], &hold, fn, "hold must be a count of pages")))
		return NULL;
	struct stream_job *j = calloc(1, sizeof(*j));
	if (!j)
		return bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
	struct wp_snap *s = &j->s;
	pthread_mutex_init(&s->lock, NULL);
	s->uffd = fd;
	s->pid = pid;
	s->out = out;
	s->hold = hold < EARLY_MAX ? hold : EARLY_MAX;
	atomic_init(&s->stop, false);
	atomic_init(&s->failed, false);
	atomic_init(&s->bytes, 0);
	s->segs = calloc(nsegs ? nsegs : 1, sizeof(*s->segs));
	s->early_off = malloc(EARLY_MAX * sizeof(*s->early_off));
	if (!s->segs || !s->early_off || posix_memalign((void **)&s->page, PAGE, FAULT_RUN * PAGE)) {
		stream_job_free(j);
		return bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
	}
	uint64_t pages = 0;
	for (size_t i = 0; i < nsegs; i++) {
		uint64_t a = q[3 * i], l = q[3 * i + 1], off = q[3 * i + 2];
		if (a % PAGE || l % PAGE || off % PAGE || (i > 0 && a < s->segs[i - 1].addr + s->segs[i - 1].len)) {
			stream_job_free(j);
			return bridge_throw_arg(env, fn, "a segment is unaligned or out of order");
		}
		s->segs[i] = (struct wp_seg){ a, l, NULL, off, pages };
		pages += l / PAGE;
	}
	s->nsegs = nsegs;
	s->state = calloc(pages ? pages : 1, 1);
	if (!s->state) {
		stream_job_free(j);
		return bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
	}
	napi_value promise = bridge_queue_job(env, fn, stream_job_run, stream_job_done, j, &j->work, &j->deferred);
	if (!promise)
		stream_job_free(j);
	return promise;
}

void bridge_init_uffd_wp(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "uffdWriteProtect", uffd_write_protect },
		{ "uffdSnapshotCopy", uffd_snapshot_copy },
		{ "uffdSnapshotStream", uffd_snapshot_stream },
		{ "uffdWpArm", uffd_wp_arm },
		{ "uffdWpRearm", uffd_wp_rearm },
		{ "uffdWpDisarm", uffd_wp_disarm },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
