/* Fd tables shared (CLONE_FILES) by processes other than a parent and its child.
 * argv[2] "line" (the default): the root R shares its table with its children A and S, and
 * A shares it with its own child G, a grandchild of the table's first holder; A's other
 * child B was forked without CLONE_FILES and holds a copy of the table, its own (criu's
 * zdtm fdt_shared has this shape).
 * argv[2] "sibling": R's child A (a table of its own) makes S with CLONE_PARENT|CLONE_FILES:
 * a child of R sharing its sibling's table and not its parent's, which criu refuses to dump
 * (no process could fork S with that table on restore).
 * On SIGUSR1 R opens an fd at PROBE_FD: it must be open in exactly the children that share
 * R's table, and gone there once R closes it; BASE_FD, a file R opened before any fork, is
 * open in every child. Then "PASS fdtable line" (or "sibling"). The ready line names the
 * children: a= s= and, in "line", g= b=. */
#define _GNU_SOURCE
#include "workload.h"

#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>

#define BASE_FD	 100
#define PROBE_FD 200
#define MAX_KIDS 4

enum { KID_A, KID_S, KID_G, KID_B };
static const char *const kid_names[MAX_KIDS] = { "A", "S", "G", "B" };

/* R asks (fd, then gen), each child answers for its own table and records the gen. */
struct board {
	atomic_int gen;
	atomic_int fd;
	atomic_int answered[MAX_KIDS];
	atomic_int probe_open[MAX_KIDS];
	atomic_int base_open[MAX_KIDS];
	atomic_int pid[MAX_KIDS];
};

static struct board *board;
static int sibling_mode;
static char stacks[MAX_KIDS][65536] __attribute__((aligned(16)));

static int is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

static void serve(int kid)
{
	/* gone with the root (a test kills only the root): each with its parent, down the line */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	atomic_store(&board->pid[kid], getpid());
	for (;;) {
		int gen = atomic_load(&board->gen);
		if (atomic_load(&board->answered[kid]) != gen) {
			atomic_store(&board->probe_open[kid], is_open(atomic_load(&board->fd)));
			atomic_store(&board->base_open[kid], is_open(BASE_FD));
			atomic_store(&board->answered[kid], gen);
		}
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

static int kid_main(void *arg)
{
	serve((int)(long)arg);
	return 0;
}

static void start(int (*fn)(void *), int kid, int flags)
{
	if (clone(fn, stacks[kid] + sizeof(stacks[kid]), flags | SIGCHLD, (void *)(long)kid) < 0)
		wl_die("clone");
}

/* A in "line": G shares A's table (R's), B gets a copy. */
static int a_line(void *arg)
{
	(void)arg;
	start(kid_main, KID_G, CLONE_FILES);
	start(kid_main, KID_B, 0);
	serve(KID_A);
	return 0;
}

/* A in "sibling": its own table, shared with S, R's child beside it. */
static int a_sibling(void *arg)
{
	(void)arg;
	start(kid_main, KID_S, CLONE_FILES | CLONE_PARENT);
	serve(KID_A);
	return 0;
}

static int kids(void)
{
	return sibling_mode ? 2 : MAX_KIDS;
}

/* One question to every child: is `fd` open in your table? false when one did not answer. */
static int ask(int fd)
{
	atomic_store(&board->fd, fd);
	int gen = atomic_fetch_add(&board->gen, 1) + 1;
	for (int i = 0; i < 2000; i++) {
		int k = 0;
		while (k < kids() && atomic_load(&board->answered[k]) == gen)
			k++;
		if (k == kids())
			return 1;
		usleep(5000);
	}
	return 0;
}

static int shares_root_table(int kid)
{
	return !sibling_mode && kid != KID_B;
}

static int check(void)
{
	if (!ask(PROBE_FD))
		return wl_fail("a child does not answer");
	for (int k = 0; k < kids(); k++) {
		if (!atomic_load(&board->base_open[k]))
			return wl_fail("fd %d, open before the forks, is not open in %s (pid %d)", BASE_FD,
				       kid_names[k], atomic_load(&board->pid[k]));
		if (atomic_load(&board->probe_open[k]))
			return wl_fail("fd %d is open in %s (pid %d) before R opened it", PROBE_FD, kid_names[k],
				       atomic_load(&board->pid[k]));
	}
	int fd = open("/dev/null", O_RDONLY);
	if (fd < 0 || dup2(fd, PROBE_FD) != PROBE_FD)
		return wl_fail("open /dev/null at %d: %s", PROBE_FD, strerror(errno));
	close(fd);
	int answered = ask(PROBE_FD);
	close(PROBE_FD);
	if (!answered)
		return wl_fail("a child does not answer");
	for (int k = 0; k < kids(); k++)
		if (atomic_load(&board->probe_open[k]) != shares_root_table(k))
			return wl_fail("fd %d R opened is %s in %s (pid %d), which %s R's table", PROBE_FD,
				       atomic_load(&board->probe_open[k]) ? "open" : "not open", kid_names[k],
				       atomic_load(&board->pid[k]), shares_root_table(k) ? "shares" : "does not share");
	if (!ask(PROBE_FD))
		return wl_fail("a child does not answer");
	for (int k = 0; k < kids(); k++)
		if (atomic_load(&board->probe_open[k]))
			return wl_fail("fd %d R closed is still open in %s (pid %d)", PROBE_FD, kid_names[k],
				       atomic_load(&board->pid[k]));
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	sibling_mode = argc > 2 && strcmp(argv[2], "sibling") == 0;
	board = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (board == MAP_FAILED)
		wl_die("mmap");
	atomic_store(&board->fd, PROBE_FD);
	for (int k = 0; k < MAX_KIDS; k++)
		atomic_store(&board->answered[k], -1);

	char path[4096];
	snprintf(path, sizeof(path), "%s/base", wl_dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || dup2(fd, BASE_FD) != BASE_FD)
		wl_die("open the base file");
	close(fd);

	if (sibling_mode) {
		start(a_sibling, KID_A, 0);
	} else {
		start(a_line, KID_A, CLONE_FILES);
		start(kid_main, KID_S, CLONE_FILES);
	}
	if (!ask(PROBE_FD))
		wl_die("the children do not answer");
	if (sibling_mode)
		wl_ready("a=%d s=%d", atomic_load(&board->pid[KID_A]), atomic_load(&board->pid[KID_S]));
	else
		wl_ready("a=%d s=%d g=%d b=%d", atomic_load(&board->pid[KID_A]), atomic_load(&board->pid[KID_S]),
			 atomic_load(&board->pid[KID_G]), atomic_load(&board->pid[KID_B]));
	for (;;) {
		wl_wait_check();
		if (check() < 0)
			wl_result("FAIL %s", wl_failure);
		else
			wl_result("PASS fdtable %s", sibling_mode ? "sibling" : "line");
	}
}
