/* Open file descriptions shared across fork, as a server that forks its workers holds
 * them (criu's zdtm transition tests unix_sock and epoll run the same shapes):
 *
 *   root P   a unix listener (its name in the state directory); an epoll made before
 *            the forks, watching the read end of a pipe that holds bytes; a stream
 *            socketpair made before the forks, with data queued each way.
 *    +- C1   forked, connects to the listener; P accepts (a1). C1 closes its copy of
 *            the pipe's read end: the epoll it shares still watches it (P holds it),
 *            so the epoll's target is no fd of C1. C1 keeps the socketpair whole.
 *    +- C2   forked after a1 exists: it holds P's end of C1's connection too (one
 *            socket, two processes), then connects itself; P accepts (a2).
 *
 * Each client has sent its greeting, which P has not read; P has sent each client its
 * own, which the client has not read.
 *
 * On SIGUSR1 P reads each connection's queue and compares it, then asks the client (a
 * byte down its control pipe) to do the same with its end and send its greeting again;
 * the client also checks that what it shares with P is the same open file description
 * (kcmp) and, for C1, that the shared epoll reports the pipe it no longer holds. P then
 * sends its greeting again, checks the epoll and the socketpair (read out, sent again),
 * and writes "PASS forkshare" or "FAIL why". Every check leaves the state as it found
 * it, so checks repeat. The ready line names the children: "c1=PID c2=PID".
 *
 * With argv[2] "keep-target" C1 keeps its copy of the pipe's read end: the epoll's target
 * is an fd of every process then, and the sockets are what is tested. */
#include "workload.h"

#include <linux/kcmp.h>
#include <poll.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/un.h>

#define CLIENTS	     2
#define EPOLL_COOKIE 0x5eed0000c0ffeeULL

static int ep, pipe_fds[2], sv[2];
static int conn[CLIENTS];   /* P's end of client i's connection */
static int ctl[CLIENTS];    /* P writes a byte: check */
static int answer[CLIENTS]; /* P reads the client's verdict line */
static pid_t kids[CLIENTS];
static int keep_target;

static const char *const to_client[CLIENTS] = { "P to C1: queued before the dump|", "P to C2: queued too|" };
static const char *const from_client[CLIENTS] = { "C1 to P: a greeting of the first client|",
						  "C2 to P: the second client's|" };
static const char *const pair_ab = "socketpair a->b, made before the forks|", *const pair_ba = "socketpair b->a|";
static const char pipe_bytes[] = "the pipe the epoll watches";

static void put(int fd, const char *s)
{
	if (send(fd, s, strlen(s), MSG_NOSIGNAL) != (ssize_t)strlen(s))
		wl_die("send");
}

/* Everything queued on stream socket fd is `want` (read out). */
static int drained_is(int fd, const char *want, const char *what)
{
	char buf[512];
	size_t n = wl_recv_all(fd, buf, sizeof(buf));
	if (n != strlen(want) || memcmp(buf, want, n) != 0)
		return wl_fail("%s holds %zu bytes \"%.*s\", not \"%s\"", what, n, (int)n, buf, want);
	return 0;
}

static int same_file(pid_t other, int fd, const char *what)
{
	long r = syscall(SYS_kcmp, getpid(), other, KCMP_FILE, fd, fd);
	if (r != 0)
		return wl_fail("fd %d (%s) of pid %d is not that of pid %d (kcmp: %ld)", fd, what, getpid(), other, r);
	return 0;
}

/* The shared epoll reports the pipe's read end, readable, with its cookie. */
static int epoll_sees_pipe(const char *who)
{
	struct epoll_event ev[4];
	int n = epoll_wait(ep, ev, 4, 0);
	if (n != 1 || !(ev[0].events & EPOLLIN) || ev[0].data.u64 != EPOLL_COOKIE)
		return wl_fail("%s: epoll_wait gives %d events (first 0x%x, data 0x%llx), not the pipe's", who, n,
			       n > 0 ? ev[0].events : 0, n > 0 ? (unsigned long long)ev[0].data.u64 : 0ULL);
	return 0;
}

static int client_check(int i, int mine, int ppid_held_conn)
{
	char what[32];
	snprintf(what, sizeof(what), "C%d's connection", i + 1);
	if (drained_is(mine, to_client[i], what))
		return -1;
	put(mine, from_client[i]);
	if (i == 0) {
		if (!keep_target && fcntl(pipe_fds[0], F_GETFD) >= 0)
			return wl_fail("C1 still holds the pipe's read end (fd %d)", pipe_fds[0]);
		if (epoll_sees_pipe("C1") || same_file(getppid(), ep, "the epoll") ||
		    same_file(getppid(), sv[0], "socketpair a") || same_file(getppid(), sv[1], "socketpair b"))
			return -1;
	} else if (same_file(getppid(), ppid_held_conn, "P's end of C1's connection")) {
		return -1;
	}
	return 0;
}

/* A client: its connection, its control and answer pipes; checks whenever P asks. */
static void client(int i, const char *path, int ctl_r, int ans_w)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (i == 0 && !keep_target)
		close(pipe_fds[0]);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		wl_die("connect");
	put(fd, from_client[i]);
	for (;;) {
		char c;
		ssize_t r = read(ctl_r, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r != 1)
			_exit(0);
		char line[600];
		if (client_check(i, fd, conn[0]))
			snprintf(line, sizeof(line), "FAIL %s\n", wl_failure);
		else
			snprintf(line, sizeof(line), "ok\n");
		if (write(ans_w, line, strlen(line)) < 0)
			wl_die("write answer");
	}
}

static int ask(int i)
{
	char line[600];
	if (write(ctl[i], "c", 1) != 1)
		return wl_fail("C%d's control pipe: %s", i + 1, strerror(errno));
	ssize_t n = read(answer[i], line, sizeof(line) - 1);
	if (n <= 0)
		return wl_fail("C%d gave no answer (%s)", i + 1, n < 0 ? strerror(errno) : "end of file");
	line[n] = 0;
	if (strcmp(line, "ok\n") != 0)
		return wl_fail("C%d: %.*s", i + 1, (int)n - 1, line);
	return 0;
}

static int check(void)
{
	for (int i = 0; i < CLIENTS; i++) {
		char what[40];
		snprintf(what, sizeof(what), "P's end of C%d's connection", i + 1);
		if (drained_is(conn[i], from_client[i], what) || ask(i))
			return -1;
		put(conn[i], to_client[i]);
	}
	if (epoll_sees_pipe("P") || drained_is(sv[1], pair_ab, "socketpair b") ||
	    drained_is(sv[0], pair_ba, "socketpair a"))
		return -1;
	put(sv[0], pair_ab);
	put(sv[1], pair_ba);
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	keep_target = argc > 2 && strcmp(argv[2], "keep-target") == 0;
	char path[108];
	snprintf(path, sizeof(path), "%s/listen.sock", wl_dir);
	int lsk = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (lsk < 0 || bind(lsk, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lsk, 4) < 0)
		wl_die("listener");
	if (pipe(pipe_fds) < 0 || write(pipe_fds[1], pipe_bytes, sizeof(pipe_bytes)) != sizeof(pipe_bytes))
		wl_die("pipe");
	ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EPOLL_COOKIE };
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, pipe_fds[0], &ev) < 0)
		wl_die("epoll");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		wl_die("socketpair");
	put(sv[0], pair_ab);
	put(sv[1], pair_ba);
	for (int i = 0; i < CLIENTS; i++) {
		int c[2], r[2];
		if (pipe(c) < 0 || pipe(r) < 0)
			wl_die("pipe");
		kids[i] = fork();
		if (kids[i] < 0)
			wl_die("fork");
		if (kids[i] == 0) {
			close(lsk);
			close(c[1]);
			close(r[0]);
			client(i, path, c[0], r[1]);
		}
		close(c[0]);
		close(r[1]);
		ctl[i] = c[1];
		answer[i] = r[0];
		conn[i] = accept(lsk, NULL, NULL);
		if (conn[i] < 0)
			wl_die("accept");
		put(conn[i], to_client[i]);
		/* the greeting is in: the client sits in read() of its control pipe from now on */
		struct pollfd pfd = { .fd = conn[i], .events = POLLIN };
		if (poll(&pfd, 1, -1) != 1)
			wl_die("poll");
	}
	close(lsk);
	wl_install_check_handler();
	wl_ready("c1=%d c2=%d", kids[0], kids[1]);
	for (;;) {
		wl_wait_check();
		if (check())
			wl_result("FAIL %s", wl_failure);
		else
			wl_result("PASS forkshare");
	}
}
