/* Private memory shared copy-on-write across two forks: root P, its child C, C's child G.
 *
 *   area   64 private anonymous pages between two PROT_NONE guards (no merging with a
 *          neighbour), in eight classes of eight pages:
 *            0 written by P before the fork, untouched since: one page of P, C and G
 *            1 written before, then by C before it forked G: C and G share C's page
 *            2 written before, then by P after the fork: C and G share the old page
 *            3 never written: zeros everywhere
 *            4 written by C alone, before it forked G: C and G share it, P reads zeros
 *            5 written before, given back by C (MADV_DONTNEED) before G: zeros in C and G
 *            6 written before, then by G: P and C share the old page
 *            7 written before, then by C after it forked G: each has its own
 *   fmap   16 pages of a file mapped MAP_PRIVATE: P writes pages 0-7 before the fork, C
 *          pages 0-1 before G; 8-15 are the file's in all
 *   gone   8 pages P writes before the fork; C unmaps them and maps fresh memory at the
 *          same place, writes pages 0-1 and leaves the rest zero (G inherits that)
 *
 * On SIGUSR1 each process checks its contents, P also that its class 0 and 6 pages and
 * fmap's pages 2-7 are C's frames (and class 0 G's), C that classes 0, 1, 2 and 4 and
 * fmap's pages 0-7 are G's: /proc/PID/pagemap gives frame numbers to root. C and G answer
 * over a pipe; P writes "PASS cowshare" or "FAIL why". The ready line names C and G. */
#include "workload.h"

#include <stdint.h>
#include <sys/mman.h>

#define PAGE	  4096UL
#define WORDS	  (PAGE / 8)
#define CLASSES	  8
#define PER_CLASS 8
#define NPAGES	  (CLASSES * PER_CLASS)
#define FPAGES	  16
#define GPAGES	  8

enum { ZERO, P0, PA, BY_C, BY_G, FILEDATA };

static uint8_t *area, *fmap, *gone;
static pid_t c_pid, g_pid;
static int req_fd, ans_fd; /* to the child (request) and from it (answer) */

static uint64_t word(int who, unsigned long page, unsigned long j)
{
	return ((uint64_t)who << 56) ^ (page * 0x9E3779B97F4A7C15ULL) ^ (j * 0xC2B2AE3D27D4EB4FULL) ^ 0x5a5a;
}

static void fill(uint8_t *base, unsigned long page, int who)
{
	uint64_t *w = (uint64_t *)(base + page * PAGE);
	for (unsigned long j = 0; j < WORDS; j++)
		w[j] = word(who, page, j);
}

static int is(const uint8_t *base, unsigned long page, int who)
{
	const uint64_t *w = (const uint64_t *)(base + page * PAGE);
	for (unsigned long j = 0; j < WORDS; j++)
		if (w[j] != (who == ZERO ? 0 : word(who, page, j)))
			return 0;
	return 1;
}

/* What each process must read in area's class `cls`. */
static int area_want(char me, int cls)
{
	static const char *const table[CLASSES] = { "PPP", "PCC", "APP", "000", "0CC", "P00", "PPG", "PCP" };
	char c = table[cls][me == 'P' ? 0 : me == 'C' ? 1 : 2];
	return c == 'P' ? P0 : c == 'A' ? PA : c == 'C' ? BY_C : c == 'G' ? BY_G : ZERO;
}

/* The frame of page `addr` in pid's pagemap (bits 0-54) with its present bit, 0 if absent. */
static uint64_t frame(pid_t pid, const void *addr)
{
	char path[64];
	uint64_t e = 0;
	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (pread(fd, &e, 8, (off_t)((uintptr_t)addr / PAGE * 8)) != 8)
		e = 0;
	close(fd);
	return e >> 63 ? (e & ((1ULL << 55) - 1)) | (1ULL << 63) : 0;
}

static int shared_with(pid_t other, const uint8_t *base, unsigned long page, const char *what)
{
	uint64_t a = frame(getpid(), base + page * PAGE), b = frame(other, base + page * PAGE);
	if (!a || a != b)
		return wl_fail("%s page %lu of pid %d is not pid %d's frame (0x%llx, 0x%llx)", what, page, getpid(),
			       other, (unsigned long long)a, (unsigned long long)b);
	return 0;
}

static int check_contents(char me)
{
	for (int cls = 0; cls < CLASSES; cls++)
		for (int k = 0; k < PER_CLASS; k++) {
			unsigned long page = (unsigned long)(cls * PER_CLASS + k);
			if (!is(area, page, area_want(me, cls)))
				return wl_fail("%c: area page %lu (class %d) is wrong", me, page, cls);
		}
	for (unsigned long p = 0; p < FPAGES; p++) {
		int want = p >= 8 ? FILEDATA : me != 'P' && p < 2 ? BY_C : P0;
		if (!is(fmap, p, want))
			return wl_fail("%c: file page %lu is wrong", me, p);
	}
	for (unsigned long p = 0; p < GPAGES; p++) {
		int want = me == 'P' ? P0 : p < 2 ? BY_C : ZERO;
		if (!is(gone, p, want))
			return wl_fail("%c: remapped page %lu is wrong", me, p);
	}
	return 0;
}

/* Asks the child to check itself; its verdict ("" when it passed) into wl_failure. */
static int ask_child(void)
{
	char buf[sizeof(wl_failure)];
	if (write(req_fd, "c", 1) != 1)
		return wl_fail("request to the child: %s", strerror(errno));
	ssize_t n = read(ans_fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		return wl_fail("no answer from the child");
	buf[n] = 0;
	if (strcmp(buf, "ok") != 0)
		return wl_fail("%s", buf);
	return 0;
}

static int check(char me)
{
	if (check_contents(me) < 0)
		return -1;
	if (me == 'P') {
		for (int k = 0; k < PER_CLASS; k++)
			if (shared_with(c_pid, area, (unsigned long)k, "P-C class 0") < 0 ||
			    shared_with(g_pid, area, (unsigned long)k, "P-G class 0") < 0 ||
			    shared_with(c_pid, area, (unsigned long)(6 * PER_CLASS + k), "P-C class 6") < 0)
				return -1;
		for (unsigned long p = 2; p < 8; p++)
			if (shared_with(c_pid, fmap, p, "P-C file") < 0)
				return -1;
	}
	if (me == 'C') {
		static const int classes[] = { 0, 1, 2, 4 };
		for (int i = 0; i < 4; i++)
			for (int k = 0; k < PER_CLASS; k++)
				if (shared_with(g_pid, area, (unsigned long)(classes[i] * PER_CLASS + k), "C-G area") <
				    0)
					return -1;
		for (unsigned long p = 0; p < 8; p++)
			if (shared_with(g_pid, fmap, p, "C-G file") < 0)
				return -1;
	}
	return me == 'G' ? 0 : ask_child();
}

/* A child's life: answer each request of its parent on `from` with its verdict on `to`. */
static void serve(char me, int from, int to)
{
	char c;
	while (read(from, &c, 1) == 1) {
		wl_failure[0] = 0;
		const char *verdict = check(me) < 0 ? wl_failure : "ok";
		if (write(to, verdict, strlen(verdict)) < 0)
			break;
	}
	_exit(0);
}

/* A pipe pair to a child about to be forked: the parent keeps req/ans, the child gets the rest. */
static void link_child(int child_end[2])
{
	int down[2], up[2];
	if (pipe2(down, O_CLOEXEC) < 0 || pipe2(up, O_CLOEXEC) < 0)
		wl_die("pipe2");
	req_fd = down[1];
	ans_fd = up[0];
	child_end[0] = down[0];
	child_end[1] = up[1];
}

/* fork() after link_child(), with a pipe `sync` the child tells its parent it is set up on;
 * the child closes the parent's ends of the link. */
static pid_t fork_linked(int sync[2])
{
	if (pipe2(sync, O_CLOEXEC) < 0)
		wl_die("pipe2");
	pid_t pid = fork();
	if (pid < 0)
		wl_die("fork");
	if (pid == 0) {
		close(req_fd);
		close(ans_fd);
	}
	return pid;
}

static uint8_t *guarded(unsigned long pages)
{
	uint8_t *m = mmap(NULL, (pages + 2) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || mprotect(m + PAGE, pages * PAGE, PROT_READ | PROT_WRITE) < 0)
		wl_die("mmap");
	return m + PAGE;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	wl_report_fatal_signals();

	area = guarded(NPAGES);
	gone = guarded(GPAGES);
	char path[4096];
	snprintf(path, sizeof(path), "%s/cowfile", wl_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		wl_die("open cowfile");
	static uint8_t page[PAGE] __attribute__((aligned(8)));
	for (unsigned long p = 0; p < FPAGES; p++) {
		for (unsigned long j = 0; j < WORDS; j++)
			((uint64_t *)page)[j] = word(FILEDATA, p, j);
		if (write(fd, page, PAGE) != (ssize_t)PAGE)
			wl_die("write cowfile");
	}
	fmap = guarded(FPAGES);
	if (mmap(fmap, FPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED)
		wl_die("mmap cowfile");
	close(fd);

	for (int cls = 0; cls < CLASSES; cls++)
		if (cls != 3 && cls != 4)
			for (int k = 0; k < PER_CLASS; k++)
				fill(area, (unsigned long)(cls * PER_CLASS + k), P0);
	for (unsigned long p = 0; p < 8; p++)
		fill(fmap, p, P0);
	for (unsigned long p = 0; p < GPAGES; p++)
		fill(gone, p, P0);

	int to_c[2], to_g[2];
	link_child(to_c);
	int sync_pipe[2];
	c_pid = fork_linked(sync_pipe);
	if (c_pid == 0) {
		close(sync_pipe[0]);
		for (int k = 0; k < PER_CLASS; k++) {
			fill(area, (unsigned long)(1 * PER_CLASS + k), BY_C);
			fill(area, (unsigned long)(4 * PER_CLASS + k), BY_C);
		}
		if (madvise(area + 5 * PER_CLASS * PAGE, PER_CLASS * PAGE, MADV_DONTNEED) < 0)
			wl_die("madvise");
		for (unsigned long p = 0; p < 2; p++)
			fill(fmap, p, BY_C);
		if (mmap(gone, GPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		    MAP_FAILED)
			wl_die("mmap over gone");
		for (unsigned long p = 0; p < 2; p++)
			fill(gone, p, BY_C);
		link_child(to_g);
		int g_sync[2];
		g_pid = fork_linked(g_sync);
		if (g_pid == 0) {
			for (int k = 0; k < PER_CLASS; k++)
				fill(area, (unsigned long)(6 * PER_CLASS + k), BY_G);
			if (write(g_sync[1], "g", 1) != 1) /* G is set up */
				wl_die("write");
			close(g_sync[0]);
			close(g_sync[1]);
			close(sync_pipe[1]);
			serve('G', to_g[0], to_g[1]);
		}
		close(to_g[0]);
		close(to_g[1]);
		close(g_sync[1]);
		char c;
		if (read(g_sync[0], &c, 1) != 1)
			wl_die("read of G's set-up pipe");
		close(g_sync[0]);
		for (int k = 0; k < PER_CLASS; k++)
			fill(area, (unsigned long)(7 * PER_CLASS + k), BY_C);
		pid_t g = g_pid;
		if (write(sync_pipe[1], &g, sizeof(g)) != sizeof(g)) /* C is set up: G's pid */
			wl_die("write");
		close(sync_pipe[1]);
		serve('C', to_c[0], to_c[1]);
	}
	close(to_c[0]);
	close(to_c[1]);
	close(sync_pipe[1]);
	/* C and G are set up: C sends G's pid */
	if (read(sync_pipe[0], &g_pid, sizeof(g_pid)) != sizeof(g_pid))
		wl_die("read of the set-up pipe");
	close(sync_pipe[0]);
	for (int k = 0; k < PER_CLASS; k++)
		fill(area, (unsigned long)(2 * PER_CLASS + k), PA);
	wl_ready("c=%d g=%d", c_pid, g_pid);
	for (;;) {
		wl_wait_check();
		wl_failure[0] = 0;
		if (check('P') < 0)
			wl_result("FAIL cowshare: %s", wl_failure);
		else
			wl_result("PASS cowshare");
	}
}
