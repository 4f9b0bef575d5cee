/* tscriu_reaper: starts one program detached from Node and reaps it at once.
 *
 * Why a separate executable: a task that is a child of Node's child_process
 * must never be ptraced (libuv's SIGCHLD handling reaps its stop
 * notifications), an orphan is reaped by pid 1 on these machines ~1.5 s late
 * (its PID stays busy), and a forked copy of Node that stays alive as a reaper
 * would make Node copy-on-write its whole heap. So the bridge posix_spawn()s
 * this small program, which forks once more and exits (Node reaps that at
 * once); the surviving copy is a child subreaper that forks+execs the workload
 * and reaps it, and any orphans of its tree, the moment they die.
 *
 *   tscriu_reaper STATUS_FD FLAGS NODE_PID STDOUT CWD PROGRAM [ARG...]
 *
 * FLAGS "k": SIGKILL the whole tree once NODE_PID exits (for tests). STDOUT ""
 * means /dev/null, CWD "" keeps the current one. The workload runs in its own
 * session, with default signal dispositions and an empty signal mask; its
 * environment is this program's. STATUS_FD receives fixed-size records: the
 * workload's pid, or the step that failed with its errno; it reaches EOF once
 * the workload has exec'd. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reaper.h"

static int status_fd = -1;

static void report(char tag, const char *stage, int value)
{
	struct reaper_record rec;
	memset(&rec, 0, sizeof(rec));
	rec.tag = tag;
	strncpy(rec.stage, stage, sizeof(rec.stage) - 1);
	rec.value = value;
	/* Under PIPE_BUF: one atomic write, never interleaved with the other side's. */
	if (write(status_fd, &rec, sizeof(rec)) < 0) {
		/* Nobody is listening any more; nothing to do. */
	}
}

static void fail(const char *stage)
{
	report(REAPER_ERROR, stage, errno);
	_exit(127);
}

/* Fds 0-2 are always open here (see main), so open() never returns target. */
static int redirect(const char *path, int flags, int target)
{
	int fd = open(path, flags | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	if (dup2(fd, target) < 0)
		return -1;
	close(fd);
	return 0;
}

/* Every disposition back to SIG_DFL, by the raw syscall: glibc's sigaction()
 * refuses its internal signals 32 and 33, and posix_spawn's SETSIGDEF skips
 * them, so an ignored 32/33 (seen here) would otherwise reach the workload --
 * SIG_IGN survives exec. */
static void default_signals(void)
{
	struct {
		void *handler;
		unsigned long flags;
		void *restorer;
		uint64_t mask;
	} dfl = { SIG_DFL, 0, NULL, 0 };
	for (int sig = 1; sig <= 64; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(dfl.mask));
}

static void start_workload(char **argv, const char *out, const char *cwd)
{
	sigset_t none;
	sigemptyset(&none);
	default_signals();
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (setsid() < 0)
		fail("setsid");
	if (redirect("/dev/null", O_RDONLY, 0) < 0)
		fail("open /dev/null");
	if (redirect(*out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 1) < 0)
		fail("open stdout");
	if (dup2(1, 2) < 0)
		fail("dup2");
	if (*cwd && chdir(cwd) < 0)
		fail("chdir");
	if (fcntl(status_fd, F_SETFD, FD_CLOEXEC) < 0)
		fail("fcntl");
	execvp(argv[0], argv);
	fail("execve");
}

/* SIGKILLs every child (our workload and the orphans we adopted). */
static void kill_children(void)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/task/%d/children", getpid());
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	int pid;
	while (fscanf(f, "%d", &pid) == 1)
		kill(pid, SIGKILL);
	fclose(f);
}

int main(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: %s STATUS_FD FLAGS NODE_PID STDOUT CWD PROGRAM [ARG...]\n", argv[0]);
		return 2;
	}
	/* Node may run with stdin/stdout/stderr closed: occupy 0-2 first so that
	 * no fd opened below lands there and is later overwritten by dup2. */
	for (;;) {
		int fd = open("/dev/null", O_RDWR);
		if (fd < 0)
			return 2;
		if (fd > 2) {
			close(fd);
			break;
		}
	}
	status_fd = atoi(argv[1]);
	/* FLAGS: "k" to die with Node, then how many fds were passed for the workload
	 * (4, 5, ...). Whatever else Node left open without O_CLOEXEC is none of the
	 * workload's business. */
	bool kill_with_parent = argv[2][0] == 'k';
	int passed = atoi(argv[2] + (kill_with_parent ? 1 : 0));
	if (status_fd != 3 || passed < 0 || passed > REAPER_MAX_FDS || close_range(4 + passed, ~0U, 0) < 0)
		return 2;
	int node_pid = atoi(argv[3]);
	const char *out = argv[4], *cwd = argv[5];

	int node_fd = -1;
	if (kill_with_parent) {
		/* Taken before the fork below, while Node is certainly alive. */
		node_fd = pidfd_open(node_pid, 0);
		if (node_fd < 0)
			fail("pidfd_open");
	}
	pid_t first = fork();
	if (first < 0)
		fail("fork");
	if (first > 0)
		_exit(0); /* Node reaps this one; the child below lives on as an orphan. */

	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		fail("prctl(PR_SET_CHILD_SUBREAPER)");
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC);
	if (sfd < 0)
		fail("signalfd");
	if (node_fd >= 0)
		fcntl(node_fd, F_SETFD, FD_CLOEXEC);

	pid_t child = fork();
	if (child < 0)
		fail("fork");
	if (child == 0)
		start_workload(argv + 6, out, cwd);
	report(REAPER_PID, "fork", child);
	close(status_fd);
	/* The workload's own now: a socket the reaper kept open would outlive it. */
	if (passed > 0)
		close_range(4, 3 + passed, 0);
	if (redirect("/dev/null", O_RDWR, 0) < 0 || dup2(0, 1) < 0 || dup2(0, 2) < 0) {
		/* Keep going: reaping matters more than our own stdio. */
	}

	bool killing = false;
	for (;;) {
		int st;
		pid_t r;
		while ((r = waitpid(-1, &st, WNOHANG)) > 0)
			;
		if (r < 0 && errno == ECHILD)
			return 0;
		if (killing)
			kill_children();
		struct pollfd p[2] = { { sfd, POLLIN, 0 }, { node_fd, POLLIN, 0 } };
		if (poll(p, node_fd >= 0 ? 2 : 1, -1) < 0)
			continue;
		if (p[0].revents) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) < 0) {
				/* Drained by an earlier read; waitpid above is what counts. */
			}
		}
		if (node_fd >= 0 && p[1].revents) {
			close(node_fd);
			node_fd = -1;
			killing = true;
		}
	}
}
