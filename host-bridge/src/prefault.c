/* The process's own fresh memory, faulted in ahead by a thread of its own.
 *
 * On this project's VMs (PVM guests) the first write to a page of fresh anonymous memory
 * costs ~11 us: the guest kernel's page fault (~5 us), then the host's shadow page table
 * entry for user space (~5 us), which nothing the guest kernel does (MADV_POPULATE_WRITE,
 * copy_to_user) sets up. A CLI dump of 1,000 TCP connections took ~9,400 faults and a
 * restore ~11,500, ~4,000 of them in V8's young generation (16 MiB, committed when V8
 * starts, written through once; the launcher's flags).
 *
 * MADV_POPULATE_WRITE does the guest's part in bulk (~0.2 us a page), and one read of each
 * page from user space the host's: the write that follows costs nothing. prefaultStart()
 * runs both on a thread of its own, for every private anonymous writable mapping that is
 * not a thread's stack, at once and every 10 ms for half a second (V8 commits its second
 * semi-space at its first scavenge): on the other CPU while the command starts. A page is
 * never written, so the memory reads as it did; pages already there are left alone. The
 * brk heap is filled too, in windows of REGION_MAX, and malloc told to serve blocks up to
 * 4 MiB from it and to grow it ahead (below).
 *
 * V8 may unmap a region between the scan and the read (its unmapper runs on threads of
 * its own). The read of a page no longer mapped raises SIGSEGV on this thread: a handler
 * installed for the length of the reads ends that region there (siglongjmp), and hands
 * every other fault to the handler it replaced (V8's, for WebAssembly traps). */
#include "bridge.h"

#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define PAGE		 4096UL
#define PASSES		 50
#define PASS_INTERVAL_NS (10 * 1000 * 1000L)
/* A larger mapping is someone's buffer (a page pool is populated when made): left alone. */
#define REGION_MAX (8UL << 20)
/* At most this much not yet there is filled by one pass. */
#define PASS_BUDGET (64UL << 20)
#define MAX_RANGES  4096
/* malloc: blocks up to this from its heap (not mmap), never trimmed below this, grown this far ahead */
#define MALLOC_MMAP_FROM (4 << 20)
#define MALLOC_TRIM_FROM (256 << 20)
#define MALLOC_TOP_PAD	 (8 << 20)

struct range {
	uintptr_t start, end;
};

struct pass_result {
	uint32_t regions; /* mappings that had pages to fill */
	uint64_t pages;	  /* pages filled */
	uint32_t cut;	  /* regions whose read met a page no longer mapped */
};

/* One pass at a time: the background thread's, or a caller's (prefaultPass). */
static pthread_mutex_t pass_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t started = PTHREAD_ONCE_INIT;

static sigjmp_buf probe_env;
static pthread_t probe_thread;
static volatile sig_atomic_t probing;
static struct sigaction saved_segv, saved_bus;

static void on_fault(int sig, siginfo_t *info, void *uc)
{
	if (probing && pthread_equal(pthread_self(), probe_thread))
		siglongjmp(probe_env, 1);
	const struct sigaction *old = sig == SIGSEGV ? &saved_segv : &saved_bus;
	if (old->sa_flags & SA_SIGINFO) {
		old->sa_sigaction(sig, info, uc);
		return;
	}
	if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
		old->sa_handler(sig);
		return;
	}
	/* The default action: a fault comes again on return; a sent signal is sent again
	 * (blocked until this handler returns). */
	signal(sig, SIG_DFL);
	if (info->si_code <= 0)
		raise(sig);
}

/* Reads /proc/self/maps whole into a malloc'd, NUL-terminated buffer; NULL on failure. */
static char *read_maps(void)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 64 << 10, len = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (cap - len < 4096) {
			char *grown = cap < (8 << 20) ? realloc(buf, cap * 2) : NULL;
			if (!grown) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = grown, cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (buf)
		buf[len] = 0;
	return buf;
}

/* The mappings to fill: private, writable, anonymous (or the brk heap), up to REGION_MAX,
 * not a stack (the main thread's is named; another thread's sits right above its guard
 * page, a mapping with no access that ends where it starts). */
static size_t candidates(struct range *out, size_t max)
{
	char *maps = read_maps();
	if (!maps)
		return 0;
	size_t n = 0;
	uintptr_t prev_end = 0;
	bool prev_guard = false;
	for (char *line = maps; *line && n < max;) {
		char *next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		else
			next = line + strlen(line);
		char *p;
		uintptr_t start = strtoul(line, &p, 16), end = *p == '-' ? strtoul(p + 1, &p, 16) : 0;
		char perms[5] = { 0 };
		if (*p == ' ' && strlen(p + 1) >= 4)
			memcpy(perms, p + 1, 4);
		/* offset, device, inode, then the name */
		char *field = p + 6;
		for (int f = 0; f < 3 && *field; f++) {
			while (*field == ' ')
				field++;
			while (*field && *field != ' ')
				field++;
		}
		while (*field == ' ')
			field++;
		bool heap = strcmp(field, "[heap]") == 0;
		bool anon = *field == 0 || heap;
		bool guarded = prev_guard && prev_end == start;
		if (end > start && anon && !guarded && (end - start <= REGION_MAX || heap) &&
		    memcmp(perms, "rw-p", 4) == 0) {
			/* (the heap in windows of REGION_MAX, mincore's vector) */
			for (uintptr_t a = start; a < end && n < max; a += REGION_MAX) {
				out[n].start = a, out[n].end = end - a > REGION_MAX ? a + REGION_MAX : end;
				n++;
			}
		}
		prev_guard = memcmp(perms, "---p", 4) == 0;
		prev_end = end;
		line = next;
	}
	free(maps);
	return n;
}

static void install_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &saved_segv);
	sigaction(SIGBUS, &sa, &saved_bus);
}

/* Puts the replaced handlers back, unless someone installed another meanwhile. */
static void remove_handler(void)
{
	struct sigaction now;
	if (sigaction(SIGSEGV, NULL, &now) == 0 && (now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_fault)
		sigaction(SIGSEGV, &saved_segv, NULL);
	if (sigaction(SIGBUS, NULL, &now) == 0 && (now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_fault)
		sigaction(SIGBUS, &saved_bus, NULL);
}

/* Reads one byte of each page of r from user space; false when a page was not mapped. */
static bool read_pages(struct range r)
{
	static volatile uint8_t sink;
	if (sigsetjmp(probe_env, 1))
		return false;
	for (uintptr_t a = r.start; a < r.end; a += PAGE)
		sink += *(volatile const uint8_t *)a;
	return true;
}

/* One pass over the process's mappings. inject_unmapped (a test): one region more, made
 * unreadable after it is populated, as a region V8 unmaps between the scan and the read. */
static struct pass_result pass(bool inject_unmapped)
{
	struct pass_result res = { 0, 0, 0 };
	static struct range regions[MAX_RANGES], fill[MAX_RANGES];
	static unsigned char present[REGION_MAX / PAGE];
	size_t n = candidates(regions, MAX_RANGES - 1), nfill = 0;
	uint8_t *gone = NULL;
	if (inject_unmapped) {
		gone = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (gone == MAP_FAILED)
			gone = NULL;
	}
	uint64_t budget = PASS_BUDGET / PAGE;
	for (size_t i = 0; i < n && nfill < MAX_RANGES - 1 && budget > 0; i++) {
		struct range r = regions[i];
		if (mincore((void *)r.start, r.end - r.start, present) != 0)
			continue; /* unmapped since the scan */
		bool counted = false;
		for (uintptr_t a = r.start; a < r.end && nfill < MAX_RANGES - 1 && budget > 0;) {
			size_t k = (a - r.start) / PAGE;
			if (present[k] & 1) {
				a += PAGE;
				continue;
			}
			uintptr_t run = a;
			while (run < r.end && !(present[(run - r.start) / PAGE] & 1) && budget > 0)
				run += PAGE, budget--;
			if (madvise((void *)a, run - a, MADV_POPULATE_WRITE) == 0) {
				fill[nfill].start = a, fill[nfill].end = run, nfill++;
				res.pages += (run - a) / PAGE;
				if (!counted)
					res.regions++, counted = true;
			}
			a = run;
		}
	}
	if (gone) {
		if (madvise(gone, 2 * PAGE, MADV_POPULATE_WRITE) == 0 && mprotect(gone, 2 * PAGE, PROT_NONE) == 0) {
			fill[nfill].start = (uintptr_t)gone, fill[nfill].end = (uintptr_t)gone + 2 * PAGE, nfill++;
			res.regions++;
		}
	}
	if (nfill > 0) {
		probe_thread = pthread_self();
		install_handler();
		probing = 1;
		for (size_t i = 0; i < nfill; i++)
			if (!read_pages(fill[i]))
				res.cut++;
		probing = 0;
		remove_handler();
	}
	if (gone)
		munmap(gone, 2 * PAGE);
	return res;
}

static void *run_passes(void *arg)
{
	(void)arg;
	/* Signals are the main thread's to take (libuv's handlers); a fault's may not be
	 * blocked (the kernel would kill the process rather than deliver it). */
	sigset_t mask;
	sigfillset(&mask);
	sigdelset(&mask, SIGSEGV);
	sigdelset(&mask, SIGBUS);
	sigdelset(&mask, SIGFPE);
	sigdelset(&mask, SIGILL);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	for (int i = 0; i < PASSES; i++) {
		pthread_mutex_lock(&pass_lock);
		(void)pass(false);
		pthread_mutex_unlock(&pass_lock);
		struct timespec wait = { 0, PASS_INTERVAL_NS };
		while (nanosleep(&wait, &wait) != 0 && errno == EINTR)
			;
	}
	return NULL;
}

static void start_thread(void)
{
	/* malloc's larger blocks come from its heap, which grows 8 MiB ahead and never gives
	 * memory back: the passes fill what is ahead, where a block of its own (mmap) would
	 * be new memory written at once (the bundle's source and code cache read in, a
	 * thousand small files read ahead, the sock_diag table). */
	mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_FROM);
	mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_FROM);
	mallopt(M_TOP_PAD, MALLOC_TOP_PAD);
	pthread_t t;
	pthread_attr_t attr;
	if (pthread_attr_init(&attr) != 0)
		return;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 << 10);
	if (pthread_create(&t, &attr, run_passes, NULL) == 0)
		pthread_setname_np(t, "tscriu-prefault");
	pthread_attr_destroy(&attr);
}

/* prefaultStart(): starts the passes (once per process; later calls do nothing). */
static napi_value prefault_start(napi_env env, napi_callback_info info)
{
	(void)info;
	pthread_once(&started, start_thread);
	napi_value r;
	napi_get_undefined(env, &r);
	return r;
}

/* prefaultPass(injectUnmapped): one pass on the calling thread, for tests. */
static napi_value prefault_pass(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	bool inject = false;
	if (!bridge_get_args(env, info, 1, argv, "prefaultPass"))
		return NULL;
	if (napi_get_value_bool(env, argv[0], &inject) != napi_ok)
		return bridge_throw_arg(env, "prefaultPass", "injectUnmapped must be a boolean");
	pthread_mutex_lock(&pass_lock);
	struct pass_result res = pass(inject);
	pthread_mutex_unlock(&pass_lock);
	napi_value r;
	napi_create_object(env, &r);
	bridge_set_u32(env, r, "regions", res.regions);
	napi_set_named_property(env, r, "pages", bridge_make_u64(env, res.pages));
	bridge_set_u32(env, r, "cut", res.cut);
	return r;
}

void bridge_init_prefault(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "prefaultStart", prefault_start },
		{ "prefaultPass", prefault_pass },
	};
	bridge_register(env, exports, fns, sizeof fns / sizeof fns[0]);
}
