/* The engine of the lazy-pages daemon (orchestrator/lazy-pages/): fills the memory of
 * restored tasks through their userfaultfds while they run.
 *
 * A space is one task's userfaultfd (or a forked child's, from UFFD_EVENT_FORK) with
 * the pages it still lacks, as views: a task address range, the image address its data
 * has (they differ after mremap), the data (a mapped pages file, or NULL when it comes
 * from a page server through lazySupply) and one state byte per page:
 *
 *   WANT  the page has not been filled yet
 *   BUSY  a copy of it is under way (claimed by the thread doing it)
 *   DONE  filled
 *   GONE  the task dropped it (munmap, MADV_DONTNEED/REMOVE): a fault gets a zero page
 *
 * A page leaves WANT/BUSY exactly once (the copier's BUSY->DONE, or an event's ->GONE),
 * and that transition counts it off `left`. One thread serves faults and the
 * non-cooperative events (fork, mremap, munmap, madvise) of every space; the fill
 * threads copy the rest in the background, in address order. A copy
 * that meets EAGAIN (an event not yet read: the kernel refuses copies while the address
 * space changes) gives its pages back as WANT and claims again from the views, which
 * the event has updated by then, so no page is ever copied to where it no longer lives.
 *
 * Each space has a gate: copiers hold it shared from their claim to the end of their
 * copy, the event thread holds it exclusively from read() to the end of handling what it
 * read. The kernel lets copies through again as soon as an event is read; without the
 * gate a copy could land between the read and the views' update: into the parent only,
 * after a fork the child's states still call DONE, or at an old address after mremap.
 *
 * Node hears from the engine through a pipe of 24-byte notes: a fault on a page whose
 * data is remote, a fork, a space whose task is gone, an error, and "drained" when
 * nothing is left to fill. */
#include "bridge.h"
#include "restore.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PG	   4096ULL
#define MAX_SPACES 4096
#define MAX_MAPS   256
/* pages a fault fills at once: the faulting one and those after it */
#define FAULT_WINDOW 16
/* pages a fill thread claims at once */
#define FILL_CHUNK 256
#define NO_SOURCE  UINT64_MAX

enum { PG_DONE = 0, PG_WANT = 1, PG_GONE = 2, PG_BUSY = 3 };
enum { NOTE_FAULT = 1, NOTE_FORK = 2, NOTE_EXITED = 3, NOTE_ERROR = 4, NOTE_DRAINED = 5 };

struct note {
	uint32_t type, space;
	uint64_t image, addr;
};

struct view {
	uint64_t addr, img, npages;
	const uint8_t *src; /* data of the first page, NULL: remote */
	uint8_t *st;
};

struct space {
	int uffd;
	uint32_t id;
	uint64_t image;
	pthread_mutex_t mu;    /* the views array */
	pthread_rwlock_t gate; /* copies (shared) against reading events (exclusive) */
	struct view *views;    /* sorted by addr, never overlapping */
	size_t nviews, cap;
	int64_t left; /* atomic */
	int dead;     /* atomic: the task's mm is gone */
};

static struct {
	pthread_mutex_t mu; /* spaces table and the fill cursor */
	pthread_cond_t work;
	struct space *spaces[MAX_SPACES];
	uint32_t nspaces;
	int started, stop;
	int note_fd, ctl_fd;
	pthread_t fault_thr;
	pthread_t fill_thr[RESTORE_MAX_THREADS];
	uint32_t nfill;
	uint32_t cur_space; /* fill cursor */
	uint64_t cur_addr;
	int64_t left; /* atomic, all spaces */
	struct {
		int fd;
		int direct; /* the same file opened O_DIRECT for the fill threads, or -1 */
		const uint8_t *base;
		size_t len;
	} maps[MAX_MAPS];
	uint32_t nmaps;
	/* statistics, atomic */
	uint64_t faults, fault_pages, fill_pages, zero_pages, supplied_pages, events;
	/* the fill threads wait until the restore has finished (lazyFill, under mu): criu's
	 * restore hands a task's userfaultfd over before its restorer has moved the VMAs into
	 * place and registered them, and a copy there meanwhile fails with ENOENT, which
	 * later means "gone" */
	int fill_open;
	/* where the first zero pages went (the fault thread writes them): said in the summary */
	uint64_t zero_at[4];
} E = { .mu = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER, .note_fd = -1, .ctl_fd = -1 };

static void note(uint32_t type, uint32_t space, uint64_t image, uint64_t addr)
{
	struct note n = { type, space, image, addr };
	/* 24 bytes: atomic on a pipe; blocking is the back-pressure of a slow reader */
	while (write(E.note_fd, &n, sizeof(n)) < 0 && errno == EINTR)
		;
}

/* `n` pages leave WANT/BUSY in space `s`. */
static void count_off(struct space *s, int64_t n)
{
	if (n == 0)
		return;
	__atomic_sub_fetch(&s->left, n, __ATOMIC_SEQ_CST);
	if (__atomic_sub_fetch(&E.left, n, __ATOMIC_SEQ_CST) == 0)
		note(NOTE_DRAINED, 0, 0, 0);
}

static bool cas(uint8_t *p, uint8_t from, uint8_t to)
{
	return __atomic_compare_exchange_n(p, &from, to, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

/* The view holding addr (caller holds s->mu), or NULL. */
static struct view *find_view(struct space *s, uint64_t addr)
{
	size_t lo = 0, hi = s->nviews;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		struct view *v = &s->views[mid];
		if (v->addr + v->npages * PG <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < s->nviews && s->views[lo].addr <= addr)
		return &s->views[lo];
	return NULL;
}

static bool add_view(struct space *s, struct view v)
{
	if (s->nviews == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct view *n = realloc(s->views, cap * sizeof(*n));
		if (!n)
			return false;
		s->views = n;
		s->cap = cap;
	}
	size_t i = s->nviews;
	while (i > 0 && s->views[i - 1].addr > v.addr) {
		s->views[i] = s->views[i - 1];
		i--;
	}
	s->views[i] = v;
	s->nviews++;
	return true;
}

/* Cuts the views at `addr` so that no view crosses it (caller holds s->mu). */
static bool split_at(struct space *s, uint64_t addr)
{
	struct view *v = find_view(s, addr);
	if (!v || v->addr == addr)
		return true;
	uint64_t k = (addr - v->addr) / PG;
	struct view right = { addr, v->img + k * PG, v->npages - k, v->src ? v->src + k * PG : NULL, v->st + k };
	v->npages = k;
	return add_view(s, right);
}

enum copy_end { COPY_OK, COPY_AGAIN, COPY_GONE, COPY_EXITED, COPY_FAIL };

/* UFFDIO_COPY of n pages; pages found present (EEXIST) are skipped. *done counts the
 * pages handled before the end it returns. */
static enum copy_end copy_pages(int uffd, uint64_t addr, const uint8_t *src, uint64_t n, uint64_t *done, int *err)
{
	*done = 0;
	while (*done < n) {
		struct uffdio_copy c;
		memset(&c, 0, sizeof(c));
		c.dst = addr + *done * PG;
		c.src = (uint64_t)(uintptr_t)(src + *done * PG);
		c.len = (n - *done) * PG;
		if (ioctl(uffd, UFFDIO_COPY, &c) == 0) {
			*done = n;
			break;
		}
		int e = errno;
		if (c.copy > 0) {
			*done += (uint64_t)c.copy / PG;
			continue;
		}
		if (e == EEXIST) {
			(*done)++;
			continue;
		}
		*err = e;
		if (e == EAGAIN)
			return COPY_AGAIN;
		if (e == ESRCH)
			return COPY_EXITED;
		if ((e == ENOENT || e == EFAULT) && n - *done > 1) {
			/* a range must lie in one VMA: the first page alone tells whether
			 * it is gone or the range crossed into the next VMA */
			uint64_t one;
			enum copy_end end = copy_pages(uffd, addr + *done * PG, src + *done * PG, 1, &one, err);
			if (end != COPY_OK)
				return end;
			(*done)++;
			continue;
		}
		if (e == ENOENT || e == EFAULT)
			return COPY_GONE;
		return COPY_FAIL;
	}
	return COPY_OK;
}

static void wake(int uffd, uint64_t addr, uint64_t len)
{
	struct uffdio_range r = { addr, len };
	ioctl(uffd, UFFDIO_WAKE, &r);
}

static void space_exited(struct space *s)
{
	if (__atomic_exchange_n(&s->dead, 1, __ATOMIC_SEQ_CST))
		return;
	note(NOTE_EXITED, s->id, s->image, 0);
	pthread_mutex_lock(&s->mu);
	int64_t n = 0;
	for (size_t i = 0; i < s->nviews; i++)
		for (uint64_t p = 0; p < s->views[i].npages; p++) {
			uint8_t old = __atomic_exchange_n(&s->views[i].st[p], PG_GONE, __ATOMIC_SEQ_CST);
			n += old == PG_WANT || old == PG_BUSY;
		}
	pthread_mutex_unlock(&s->mu);
	count_off(s, n);
}

/* After a copy of claimed pages [st, st+n) ended: the first `done` are DONE, the rest go
 * back to WANT (AGAIN: the views may have changed; the claim is made again from them) or
 * to GONE. */
static void settle(struct space *s, uint8_t *st, uint64_t n, uint64_t done, enum copy_end end, int err, uint64_t addr)
{
	int64_t off = 0;
	for (uint64_t i = 0; i < done; i++)
		off += cas(&st[i], PG_BUSY, PG_DONE);
	uint64_t i = done;
	if (end == COPY_GONE) {
		/* no VMA there any more, and no event coming: the page is gone */
		off += cas(&st[i], PG_BUSY, PG_GONE);
		i++;
	}
	for (; i < n; i++)
		cas(&st[i], PG_BUSY, PG_WANT);
	count_off(s, off);
	if (end == COPY_EXITED)
		space_exited(s);
	else if (end == COPY_FAIL)
		note(NOTE_ERROR, s->id, addr + done * PG, (uint64_t)err);
}

/* Claims up to max WANT pages with local data starting at addr in view v (caller holds
 * s->mu): their count. */
static uint64_t claim(struct view *v, uint64_t first, uint64_t max)
{
	uint64_t n = 0;
	while (first + n < v->npages && n < max && cas(&v->st[first + n], PG_WANT, PG_BUSY))
		n++;
	return n;
}

/* ---- the fault and event thread ---- */

static void on_fault(struct space *s, uint64_t address)
{
	uint64_t addr = address & ~(PG - 1);
	__atomic_add_fetch(&E.faults, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&s->mu);
	struct view *v = find_view(s, addr);
	uint8_t state = PG_GONE;
	uint64_t k = 0, n = 0, img = 0;
	const uint8_t *src = NULL;
	uint8_t *st = NULL;
	if (v) {
		k = (addr - v->addr) / PG;
		state = __atomic_load_n(&v->st[k], __ATOMIC_SEQ_CST);
		img = v->img + k * PG;
		if (state == PG_WANT && v->src) {
			n = claim(v, k, FAULT_WINDOW);
			src = v->src + k * PG;
			st = v->st + k;
		}
	}
	pthread_mutex_unlock(&s->mu);
	if (state == PG_WANT && !src) {
		/* remote data: Node fetches it and calls lazySupply, which wakes the task */
		note(NOTE_FAULT, s->id, s->image, img);
		return;
	}
	if (n > 0) {
		uint64_t done;
		int err = 0;
		enum copy_end end = copy_pages(s->uffd, addr, src, n, &done, &err);
		__atomic_add_fetch(&E.fault_pages, done, __ATOMIC_RELAXED);
		settle(s, st, n, done, end, err, addr);
		if (end == COPY_OK)
			return;
		/* AGAIN: an event comes first; the task faults again after it */
		wake(s->uffd, addr, PG);
		return;
	}
	if (state == PG_GONE) {
		struct uffdio_zeropage z;
		memset(&z, 0, sizeof(z));
		z.range.start = addr;
		z.range.len = PG;
		if (ioctl(s->uffd, UFFDIO_ZEROPAGE, &z) == 0) {
			uint64_t k = __atomic_fetch_add(&E.zero_pages, 1, __ATOMIC_RELAXED);
			if (k < sizeof(E.zero_at) / sizeof(E.zero_at[0]))
				__atomic_store_n(&E.zero_at[k], addr, __ATOMIC_RELAXED);
			return;
		}
		if (errno == ESRCH) {
			space_exited(s);
			return;
		}
	}
	/* BUSY (a copy under way wakes it), DONE, or a zero page that lost a race */
	wake(s->uffd, addr, PG);
}

/* munmap, MADV_DONTNEED/REMOVE: the pages of [start, end) are gone. */
static void on_remove(struct space *s, uint64_t start, uint64_t end)
{
	int64_t n = 0;
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < s->nviews; i++) {
		struct view *v = &s->views[i];
		uint64_t vend = v->addr + v->npages * PG;
		uint64_t a = v->addr > start ? v->addr : start, b = vend < end ? vend : end;
		for (uint64_t p = a; p < b; p += PG) {
			uint8_t old = __atomic_exchange_n(&v->st[(p - v->addr) / PG], PG_GONE, __ATOMIC_SEQ_CST);
			n += old == PG_WANT || old == PG_BUSY;
		}
	}
	pthread_mutex_unlock(&s->mu);
	count_off(s, n);
}

/* mremap moved [from, from+len) to `to`: the views move with their pages; a copy under
 * way to the old place fails (EAGAIN) and gives its pages back for the new one. */
static bool on_remap(struct space *s, uint64_t from, uint64_t to, uint64_t len)
{
	bool ok = true;
	pthread_mutex_lock(&s->mu);
	/* whatever the destination held is gone (an UNMAP event said so too) */
	ok = split_at(s, from) && split_at(s, from + len) && split_at(s, to) && split_at(s, to + len);
	if (ok) {
		size_t w = 0;
		for (size_t i = 0; i < s->nviews; i++) {
			struct view *v = &s->views[i];
			if (v->addr >= to && v->addr < to + len)
				continue; /* dropped: its pages were unmapped */
			s->views[w++] = *v;
		}
		s->nviews = w;
		for (size_t i = 0; i < s->nviews; i++) {
			struct view *v = &s->views[i];
			if (v->addr >= from && v->addr < from + len)
				v->addr = to + (v->addr - from);
		}
		/* insertion sort: the views were sorted except the moved block */
		for (size_t i = 1; i < s->nviews; i++) {
			struct view x = s->views[i];
			size_t j = i;
			while (j > 0 && s->views[j - 1].addr > x.addr) {
				s->views[j] = s->views[j - 1];
				j--;
			}
			s->views[j] = x;
		}
	}
	pthread_mutex_unlock(&s->mu);
	return ok;
}

static struct space *new_space(int uffd, uint64_t image);
static bool publish(struct space *s);

/* A fork of space p's task: the child has p's missing pages missing too. */
static void on_fork(struct space *p, int ufd)
{
	fcntl(ufd, F_SETFL, O_NONBLOCK);
	struct space *c = new_space(ufd, p->image);
	if (!c) {
		close(ufd);
		note(NOTE_ERROR, p->id, 0, ENOMEM);
		return;
	}
	pthread_mutex_lock(&p->mu);
	uint64_t total = 0;
	for (size_t i = 0; i < p->nviews; i++)
		total += p->views[i].npages;
	uint8_t *st = malloc(total ? total : 1);
	bool ok = st != NULL;
	uint64_t at = 0;
	for (size_t i = 0; ok && i < p->nviews; i++) {
		struct view v = p->views[i];
		for (uint64_t k = 0; k < v.npages; k++) {
			uint8_t x = __atomic_load_n(&v.st[k], __ATOMIC_SEQ_CST);
			/* a copy under way goes to the parent only */
			st[at + k] = x == PG_BUSY ? PG_WANT : x;
			c->left += st[at + k] == PG_WANT;
		}
		v.st = st + at;
		at += v.npages;
		ok = add_view(c, v);
	}
	pthread_mutex_unlock(&p->mu);
	if (!ok || !publish(c)) {
		close(ufd);
		note(NOTE_ERROR, p->id, 0, ENOMEM);
		return;
	}
	note(NOTE_FORK, c->id, c->image, p->id);
}

static void read_events(struct space *s)
{
	struct uffd_msg msgs[32];
	for (;;) {
		pthread_rwlock_wrlock(&s->gate);
		ssize_t r = read(s->uffd, msgs, sizeof(msgs));
		if (r <= 0) {
			pthread_rwlock_unlock(&s->gate);
			if (r < 0 && errno == EINTR)
				continue;
			return;
		}
		for (size_t i = 0; i < (size_t)r / sizeof(msgs[0]); i++) {
			struct uffd_msg *m = &msgs[i];
			switch (m->event) {
			case UFFD_EVENT_PAGEFAULT:
				on_fault(s, m->arg.pagefault.address);
				break;
			case UFFD_EVENT_FORK:
				__atomic_add_fetch(&E.events, 1, __ATOMIC_RELAXED);
				on_fork(s, (int)m->arg.fork.ufd);
				break;
			case UFFD_EVENT_REMAP:
				__atomic_add_fetch(&E.events, 1, __ATOMIC_RELAXED);
				if (!on_remap(s, m->arg.remap.from, m->arg.remap.to, m->arg.remap.len))
					note(NOTE_ERROR, s->id, m->arg.remap.from, ENOMEM);
				break;
			case UFFD_EVENT_REMOVE:
			case UFFD_EVENT_UNMAP:
				__atomic_add_fetch(&E.events, 1, __ATOMIC_RELAXED);
				on_remove(s, m->arg.remove.start, m->arg.remove.end);
				break;
			default:
				break;
			}
		}
		pthread_rwlock_unlock(&s->gate);
	}
}

static void *fault_main(void *arg)
{
	(void)arg;
	struct pollfd pf[MAX_SPACES + 1];
	struct space *who[MAX_SPACES + 1];
	while (!__atomic_load_n(&E.stop, __ATOMIC_SEQ_CST)) {
		nfds_t n = 0;
		pf[n].fd = E.ctl_fd;
		pf[n].events = POLLIN;
		who[n++] = NULL;
		pthread_mutex_lock(&E.mu);
		for (uint32_t i = 0; i < E.nspaces; i++) {
			struct space *s = E.spaces[i];
			if (__atomic_load_n(&s->dead, __ATOMIC_SEQ_CST))
				continue;
			pf[n].fd = s->uffd;
			pf[n].events = POLLIN;
			who[n++] = s;
		}
		pthread_mutex_unlock(&E.mu);
		if (poll(pf, n, -1) < 0)
			continue;
		if (pf[0].revents) {
			uint64_t x;
			if (read(E.ctl_fd, &x, sizeof(x)) < 0) {
				/* nothing: the loop looks at E.stop and the spaces again */
			}
		}
		for (nfds_t i = 1; i < n; i++) {
			if (pf[i].revents & POLLIN)
				read_events(who[i]);
			else if (pf[i].revents & (POLLERR | POLLHUP))
				space_exited(who[i]);
		}
	}
	return NULL;
}

/* ---- the fill threads ---- */

/* Claims the next chunk of WANT pages with local data after the cursor, its space's gate
 * held shared; *busy when a space was skipped because its events were being read. */
static bool next_chunk(struct space **sp, uint64_t *addr, const uint8_t **src, uint8_t **st, uint64_t *n, bool *busy)
{
	/* two passes: from the cursor on, then from the start (pages given back, forks) */
	for (int pass = 0; pass < 2; pass++) {
		for (; E.cur_space < E.nspaces; E.cur_space++, E.cur_addr = 0) {
			struct space *s = E.spaces[E.cur_space];
			if (__atomic_load_n(&s->left, __ATOMIC_SEQ_CST) <= 0 ||
			    __atomic_load_n(&s->dead, __ATOMIC_SEQ_CST))
				continue;
			/* held until the copy is settled (fill_main); busy: events are being read */
			if (pthread_rwlock_tryrdlock(&s->gate) != 0) {
				*busy = true;
				continue;
			}
			pthread_mutex_lock(&s->mu);
			for (size_t i = 0; i < s->nviews; i++) {
				struct view *v = &s->views[i];
				if (!v->src || v->addr + v->npages * PG <= E.cur_addr)
					continue;
				uint64_t k = E.cur_addr > v->addr ? (E.cur_addr - v->addr) / PG : 0;
				for (; k < v->npages; k++) {
					if (__atomic_load_n(&v->st[k], __ATOMIC_SEQ_CST) != PG_WANT)
						continue;
					uint64_t got = claim(v, k, FILL_CHUNK);
					if (got == 0)
						continue;
					*sp = s;
					*addr = v->addr + k * PG;
					*src = v->src + k * PG;
					*st = v->st + k;
					*n = got;
					E.cur_addr = *addr + got * PG;
					pthread_mutex_unlock(&s->mu);
					return true;
				}
			}
			pthread_mutex_unlock(&s->mu);
			pthread_rwlock_unlock(&s->gate);
		}
		E.cur_space = 0;
		E.cur_addr = 0;
	}
	return false;
}

/* The fill threads read their chunk with O_DIRECT into a buffer of their own and copy
 * from there: 1 GiB took 1.0-1.3 s through the mapped file's page faults here, the disk
 * reads 3 GB/s straight. The mapping stays for faults (a page or a few, at random). */
static const uint8_t *direct_read(const uint8_t *src, uint64_t len, uint8_t *buf)
{
	for (uint32_t i = 0; i < E.nmaps; i++) {
		if (src < E.maps[i].base || src + len > E.maps[i].base + E.maps[i].len)
			continue;
		if (E.maps[i].direct < 0)
			return src;
		off_t off = (off_t)(src - E.maps[i].base);
		uint64_t got = 0;
		while (got < len) {
			ssize_t r = pread(E.maps[i].direct, buf + got, len - got, off + (off_t)got);
			if (r <= 0) {
				if (r < 0 && errno == EINTR)
					continue;
				return src; /* the mapping then */
			}
			got += (uint64_t)r;
		}
		return buf;
	}
	return src;
}

static void *fill_main(void *arg)
{
	(void)arg;
	uint8_t *buf = NULL;
	if (posix_memalign((void **)&buf, PG, FILL_CHUNK * PG) != 0)
		buf = NULL;
	pthread_mutex_lock(&E.mu);
	while (!E.stop) {
		struct space *s;
		uint64_t addr, n;
		const uint8_t *src;
		uint8_t *st;
		bool busy = false;
		if (!E.fill_open) {
			pthread_cond_wait(&E.work, &E.mu);
			continue;
		}
		if (!next_chunk(&s, &addr, &src, &st, &n, &busy)) {
			if (busy) {
				pthread_mutex_unlock(&E.mu);
				struct timespec ts = { 0, 50000 };
				nanosleep(&ts, NULL);
				pthread_mutex_lock(&E.mu);
			} else {
				pthread_cond_wait(&E.work, &E.mu);
			}
			continue;
		}
		pthread_mutex_unlock(&E.mu);
		uint64_t done;
		int err = 0;
		if (buf)
			src = direct_read(src, n * PG, buf);
		enum copy_end end = copy_pages(s->uffd, addr, src, n, &done, &err);
		__atomic_add_fetch(&E.fill_pages, done, __ATOMIC_RELAXED);
		settle(s, st, n, done, end, err, addr);
		pthread_rwlock_unlock(&s->gate);
		if (end == COPY_AGAIN) {
			/* the fault thread reads the event meanwhile */
			struct timespec ts = { 0, 100000 };
			nanosleep(&ts, NULL);
		}
		pthread_mutex_lock(&E.mu);
	}
	pthread_mutex_unlock(&E.mu);
	free(buf);
	return NULL;
}

/* ---- spaces ---- */

static struct space *new_space(int uffd, uint64_t image)
{
	struct space *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->uffd = uffd;
	s->image = image;
	pthread_mutex_init(&s->mu, NULL);
	/* glibc prefers readers by default: the fill threads would starve the event thread */
	pthread_rwlockattr_t a;
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->gate, &a);
	pthread_rwlockattr_destroy(&a);
	return s;
}

/* Adds s to the table, wakes the threads. */
static bool publish(struct space *s)
{
	pthread_mutex_lock(&E.mu);
	if (E.nspaces == MAX_SPACES) {
		pthread_mutex_unlock(&E.mu);
		return false;
	}
	s->id = E.nspaces;
	E.spaces[E.nspaces++] = s;
	__atomic_add_fetch(&E.left, s->left, __ATOMIC_SEQ_CST);
	pthread_cond_broadcast(&E.work);
	pthread_mutex_unlock(&E.mu);
	uint64_t one = 1;
	if (write(E.ctl_fd, &one, sizeof(one)) < 0) {
		/* the counter is far from full: cannot fail */
	}
	return true;
}

static const uint8_t *map_source(int fd, uint64_t off, uint64_t len, napi_env env, const char *fn)
{
	for (uint32_t i = 0; i < E.nmaps; i++)
		if (E.maps[i].fd == fd)
			return off + len <= E.maps[i].len ? E.maps[i].base + off : NULL;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		bridge_throw_errno(env, "fstat of a pages file", errno, 0, NULL);
		return NULL;
	}
	if (E.nmaps == MAX_MAPS || (uint64_t)st.st_size < off + len) {
		bridge_throw_arg(env, fn, "a run's data lies past the end of its pages file");
		return NULL;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		bridge_throw_errno(env, "mmap of a pages file", errno, 0, NULL);
		return NULL;
	}
	madvise(p, (size_t)st.st_size, MADV_RANDOM);
	E.maps[E.nmaps].fd = fd;
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	E.maps[E.nmaps].direct = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	E.maps[E.nmaps].base = p;
	E.maps[E.nmaps].len = (size_t)st.st_size;
	E.nmaps++;
	return (const uint8_t *)p + off;
}

/* lazyStart(noteFd, threads): the fault thread and `threads` fill threads. */
static napi_value lazy_start(napi_env env, napi_callback_info info)
{
	const char *fn = "lazyStart";
	napi_value argv[2];
	int32_t nfd;
	uint32_t threads;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &nfd, fn, "noteFd must be the write end of a pipe") ||
	    !bridge_arg_uint32(env, argv[1], &threads, fn, "threads must be a count"))
		return NULL;
	if (E.started)
		return bridge_throw_arg(env, fn, "the engine runs already");
	if (threads > RESTORE_MAX_THREADS)
		threads = RESTORE_MAX_THREADS;
	E.ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (E.ctl_fd < 0)
		return bridge_throw_errno(env, "eventfd", errno, 0, NULL);
	E.note_fd = nfd;
	E.stop = 0;
	E.fill_open = 0;
	int rc = pthread_create(&E.fault_thr, NULL, fault_main, NULL);
	if (rc) {
		close(E.ctl_fd);
		return bridge_throw_errno(env, "pthread_create", rc, 0, NULL);
	}
	E.nfill = 0;
	for (uint32_t i = 0; i < threads; i++)
		if (pthread_create(&E.fill_thr[E.nfill], NULL, fill_main, NULL) == 0)
			E.nfill++;
	E.started = 1;
	return NULL;
}

/* lazyAddSpace(uffd, image, views): a task's userfaultfd and the pages it lacks, as
 * (address, pages, pages fd or 2^64-1 for remote data, file offset) quadruples in
 * address order; its space id. The engine owns uffd from here on. */
static napi_value lazy_add_space(napi_env env, napi_callback_info info)
{
	const char *fn = "lazyAddSpace";
	napi_value argv[3];
	int32_t uffd;
	uint64_t image, *q;
	size_t n;
	if (!bridge_get_args(env, info, 3, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &uffd, fn, "uffd must be a userfaultfd") ||
	    !bridge_arg_word(env, argv[1], &image, fn, "image must be the task's id in the images") ||
	    !bridge_arg_u64s(env, argv[2], &q, &n, 4, fn, "views must be a BigUint64Array of quadruples"))
		return NULL;
	if (!E.started)
		return bridge_throw_arg(env, fn, "lazyStart first");
	/* events are read until EAGAIN */
	if (fcntl(uffd, F_SETFL, O_NONBLOCK) < 0)
		return bridge_throw_errno(env, "fcntl(O_NONBLOCK) of a userfaultfd", errno, 0, NULL);
	uint64_t total = 0, prev_end = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t a = q[4 * i], np = q[4 * i + 1];
		if (a % PG || np == 0 || np > (1ULL << 36) || a < prev_end || a + np * PG < a)
			return bridge_throw_arg(env, fn, "views must be page aligned, non-empty and in address order");
		prev_end = a + np * PG;
		total += np;
	}
	struct space *s = new_space(uffd, image);
	uint8_t *st = s ? malloc(total ? total : 1) : NULL;
	if (!st) {
		free(s);
		return bridge_throw_errno(env, fn, ENOMEM, 0, NULL);
	}
	memset(st, PG_WANT, total);
	uint64_t at = 0;
	for (size_t i = 0; i < n; i++) {
		struct view v = { q[4 * i], q[4 * i], q[4 * i + 1], NULL, st + at };
		if (q[4 * i + 2] != NO_SOURCE) {
			v.src = map_source((int)q[4 * i + 2], q[4 * i + 3], v.npages * PG, env, fn);
			if (!v.src) {
				free(s->views);
				free(s);
				free(st);
				return NULL;
			}
		}
		at += v.npages;
		if (!add_view(s, v)) {
			free(s->views);
			free(s);
			free(st);
			return bridge_throw_errno(env, fn, ENOMEM, 0, NULL);
		}
	}
	s->left = (int64_t)total;
	if (!publish(s)) {
		free(s->views);
		free(s);
		free(st);
		return bridge_throw_arg(env, fn, "too many address spaces");
	}
	napi_value r;
	napi_create_uint32(env, s->id, &r);
	return r;
}

/* The next live space of task `image` (the task or a child it forked) from *i on, or
 * NULL; the table only grows, so *i carries on where the last call stopped. */
static struct space *next_of_image(uint64_t image, uint32_t *i)
{
	pthread_mutex_lock(&E.mu);
	uint32_t n = E.nspaces;
	pthread_mutex_unlock(&E.mu);
	while (*i < n) {
		struct space *s = E.spaces[(*i)++];
		if (s->image == image && !__atomic_load_n(&s->dead, __ATOMIC_SEQ_CST))
			return s;
	}
	return NULL;
}

/* lazySupply(image, imgAddr, data): pages of task `image` from a page server, copied
 * into every space that still wants them (forks and mremaps included); the number of
 * pages copied. */
static napi_value lazy_supply(napi_env env, napi_callback_info info)
{
	const char *fn = "lazySupply";
	napi_value argv[3];
	uint64_t image, img;
	uint8_t *data;
	size_t len;
	if (!bridge_get_args(env, info, 3, argv, fn) ||
	    !bridge_arg_word(env, argv[0], &image, fn, "image must be the task's id in the images") ||
	    !bridge_arg_word(env, argv[1], &img, fn, "imgAddr must be an address") ||
	    !bridge_arg_bytes(env, argv[2], &data, &len, fn, "data must be a Buffer of whole pages"))
		return NULL;
	if (img % PG || len % PG)
		return bridge_throw_arg(env, fn, "data must be whole pages at a page address");
	uint64_t end = img + len, copied = 0;
	uint32_t si = 0;
	struct space *s;
	while ((s = next_of_image(image, &si))) {
		for (;;) {
			/* one claim at a time: the views may change while the lock is dropped */
			uint64_t addr = 0, n = 0;
			const uint8_t *src = NULL;
			uint8_t *st = NULL;
			pthread_rwlock_rdlock(&s->gate);
			pthread_mutex_lock(&s->mu);
			for (size_t i = 0; i < s->nviews && n == 0; i++) {
				struct view *v = &s->views[i];
				uint64_t vend = v->img + v->npages * PG;
				if (v->src || vend <= img || v->img >= end)
					continue;
				uint64_t a = v->img > img ? v->img : img, b = vend < end ? vend : end;
				for (uint64_t k = (a - v->img) / PG; k < (b - v->img) / PG; k++) {
					n = claim(v, k, (b - v->img) / PG - k);
					if (n) {
						addr = v->addr + k * PG;
						src = data + (v->img + k * PG - img);
						st = v->st + k;
						break;
					}
				}
			}
			pthread_mutex_unlock(&s->mu);
			if (n == 0) {
				pthread_rwlock_unlock(&s->gate);
				break;
			}
			uint64_t done;
			int err = 0;
			enum copy_end e = copy_pages(s->uffd, addr, src, n, &done, &err);
			copied += done;
			settle(s, st, n, done, e, err, addr);
			pthread_rwlock_unlock(&s->gate);
			if (e == COPY_EXITED || e == COPY_FAIL)
				break;
			if (e == COPY_AGAIN) {
				struct timespec ts = { 0, 100000 };
				nanosleep(&ts, NULL);
			}
		}
	}
	__atomic_add_fetch(&E.supplied_pages, copied, __ATOMIC_RELAXED);
	napi_value r;
	napi_create_double(env, (double)copied, &r);
	return r;
}

/* lazyWanted(image, from, max): the first run of remote pages of task `image` still
 * wanted, at image address >= from, at most max pages: [imgAddr, pages], or null. */
static napi_value lazy_wanted(napi_env env, napi_callback_info info)
{
	const char *fn = "lazyWanted";
	napi_value argv[3];
	uint64_t image, from;
	uint32_t max;
	if (!bridge_get_args(env, info, 3, argv, fn) ||
	    !bridge_arg_word(env, argv[0], &image, fn, "image must be the task's id in the images") ||
	    !bridge_arg_word(env, argv[1], &from, fn, "from must be an address") ||
	    !bridge_arg_uint32(env, argv[2], &max, fn, "max must be a page count"))
		return NULL;
	uint64_t best = UINT64_MAX, best_n = 0;
	uint32_t si = 0;
	struct space *s;
	while ((s = next_of_image(image, &si))) {
		pthread_mutex_lock(&s->mu);
		for (size_t i = 0; i < s->nviews; i++) {
			struct view *v = &s->views[i];
			if (v->src || v->img + v->npages * PG <= from || v->img >= best)
				continue;
			uint64_t k = v->img < from ? (from - v->img) / PG : 0;
			for (; k < v->npages && v->img + k * PG < best; k++) {
				if (__atomic_load_n(&v->st[k], __ATOMIC_SEQ_CST) != PG_WANT)
					continue;
				uint64_t n = 1;
				while (k + n < v->npages && n < max &&
				       __atomic_load_n(&v->st[k + n], __ATOMIC_SEQ_CST) == PG_WANT)
					n++;
				best = v->img + k * PG;
				best_n = n;
				break;
			}
		}
		pthread_mutex_unlock(&s->mu);
	}
	napi_value r;
	if (best == UINT64_MAX) {
		napi_get_null(env, &r);
		return r;
	}
	napi_value a, c;
	napi_create_array_with_length(env, 2, &r);
	napi_create_bigint_uint64(env, best, &a);
	napi_create_double(env, (double)best_n, &c);
	napi_set_element(env, r, 0, a);
	napi_set_element(env, r, 1, c);
	return r;
}

static void set_num(napi_env env, napi_value o, const char *k, double v)
{
	napi_value x;
	napi_create_double(env, v, &x);
	napi_set_named_property(env, o, k, x);
}

/* lazyFill(): the restore has finished, every VMA is in place: the fill threads start. */
static napi_value lazy_fill(napi_env env, napi_callback_info info)
{
	(void)env;
	(void)info;
	pthread_mutex_lock(&E.mu);
	E.fill_open = 1;
	pthread_cond_broadcast(&E.work);
	pthread_mutex_unlock(&E.mu);
	return NULL;
}

/* lazyStatus(): what is left and what was done. */
static napi_value lazy_status(napi_env env, napi_callback_info info)
{
	(void)info;
	napi_value o;
	napi_create_object(env, &o);
	set_num(env, o, "left", (double)__atomic_load_n(&E.left, __ATOMIC_SEQ_CST));
	set_num(env, o, "spaces", E.nspaces);
	set_num(env, o, "faults", (double)__atomic_load_n(&E.faults, __ATOMIC_RELAXED));
	set_num(env, o, "faultPages", (double)__atomic_load_n(&E.fault_pages, __ATOMIC_RELAXED));
	set_num(env, o, "fillPages", (double)__atomic_load_n(&E.fill_pages, __ATOMIC_RELAXED));
	set_num(env, o, "zeroPages", (double)__atomic_load_n(&E.zero_pages, __ATOMIC_RELAXED));
	napi_value at;
	napi_create_array(env, &at);
	uint64_t nz = __atomic_load_n(&E.zero_pages, __ATOMIC_RELAXED);
	for (uint32_t i = 0; i < nz && i < sizeof(E.zero_at) / sizeof(E.zero_at[0]); i++)
		napi_set_element(env, at, i, bridge_make_u64(env, __atomic_load_n(&E.zero_at[i], __ATOMIC_RELAXED)));
	napi_set_named_property(env, o, "zeroAt", at);
	set_num(env, o, "suppliedPages", (double)__atomic_load_n(&E.supplied_pages, __ATOMIC_RELAXED));
	set_num(env, o, "events", (double)__atomic_load_n(&E.events, __ATOMIC_RELAXED));
	return o;
}

/* lazyStop(): the threads stopped, every userfaultfd closed (the kernel then lets
 * faults through as zero pages: call it only when nothing is left, or after the tasks
 * were killed), the pages files unmapped. */
static napi_value lazy_stop(napi_env env, napi_callback_info info)
{
	(void)env;
	(void)info;
	if (!E.started)
		return NULL;
	pthread_mutex_lock(&E.mu);
	E.stop = 1;
	pthread_cond_broadcast(&E.work);
	pthread_mutex_unlock(&E.mu);
	uint64_t one = 1;
	if (write(E.ctl_fd, &one, sizeof(one)) < 0) {
		/* cannot fail: see publish */
	}
	pthread_join(E.fault_thr, NULL);
	for (uint32_t i = 0; i < E.nfill; i++)
		pthread_join(E.fill_thr[i], NULL);
	for (uint32_t i = 0; i < E.nspaces; i++) {
		close(E.spaces[i]->uffd);
		/* views and state arrays stay: small, and a forked space shares none */
	}
	for (uint32_t i = 0; i < E.nmaps; i++) {
		munmap((void *)E.maps[i].base, E.maps[i].len);
		if (E.maps[i].direct >= 0)
			close(E.maps[i].direct);
	}
	E.nmaps = 0;
	close(E.ctl_fd);
	E.ctl_fd = -1;
	E.started = 0;
	return NULL;
}

void bridge_init_lazy(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "lazyStart", lazy_start },   { "lazyAddSpace", lazy_add_space }, { "lazySupply", lazy_supply },
		{ "lazyWanted", lazy_wanted }, { "lazyStatus", lazy_status },	   { "lazyFill", lazy_fill },
		{ "lazyStop", lazy_stop },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
