/* pidfds, and fds of kinds a dump refuses (issue 8), one case per run (argv[2]):
 *
 *   pidfd      fd 20 a pidfd of a live child (it pauses; dies with us), fd 21 a pidfd of
 *              ourselves with PIDFD_NONBLOCK, fd 22 a pidfd of a child that exited with
 *              status 7 and that we leave a zombie, fds 23 and 24 two pidfds of a child
 *              that exited and was reaped (a process that is gone; 24 non-blocking).
 *              Checks: each names its pid (fdinfo "Pid:", -1 for the one gone), the live
 *              ones are not readable and take signal 0, the zombie's is readable and
 *              waitid(P_PIDFD) sees its status 7, the gone one's is readable and a signal
 *              to it fails with ESRCH; the flags are as opened.
 *   thread     thread pidfds (PIDFD_THREAD): fd 20 of a second thread (it blocks in read),
 *              fd 21 of the main thread, fd 22 of a third thread that each check tells to
 *              exit (through the pipe at fds 23, 24). Checks: fdinfo "Pid:" names each
 *              TID and the flags have PIDFD_THREAD, signal 0 goes through 20 and 21, neither
 *              is readable; then the third thread is told to exit and fd 22 must report it
 *              (poll readable, "Pid: -1", a signal to it fails with ESRCH). Dumped again
 *              after a check, fd 22 is a thread pidfd of a thread that is gone. A child
 *              (live=) holds fds 20-22 too (inherited): its fd 20 must name the TID.
 *   thread_main as thread, without fd 20: what criu can restore (its restore opens the
 *              pidfds before it makes the threads) once the third thread is gone
 *   thread_epoll as thread_main, with an epoll at fd 25 that watches fd 21: a restore refuses
 *              it only for a thread other than a leader, so the test rewrites the image
 *   outside    a pidfd of pid 1, outside any tree we are dumped in
 *   outside_thread a thread pidfd of pid 1 (PIDFD_THREAD)
 *   io_uring   an io_uring instance
 *   userfaultfd a userfaultfd
 *
 * The cases other than pidfd and thread are refused by a dump: their check says the fd is there and
 * the task runs ("PASS <case>"). The ready line names the pids: "live=… zombie=…". */
#include "workload.h"

#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static const char *which;
static pid_t live, zombie, gone;
static volatile pid_t second, third;
static int exit_pipe[2] = { 23, 24 };
static char why[256];

static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return -1;
}

static int pidfd_open(pid_t pid, unsigned flags)
{
	return (int)syscall(SYS_pidfd_open, pid, flags);
}

static void pin(int fd, int want)
{
	if (fd < 0)
		wl_die(which);
	if (fd == want)
		return;
	if (dup2(fd, want) < 0)
		wl_die("dup2");
	close(fd);
}

/* The "Pid:" of the fdinfo of fd of process pid (0: ourselves), or -2. */
static int fdinfo_pid_of(pid_t pid, int fd)
{
	char path[64], buf[512];
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)pid, fd);
	else
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	int f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return -2;
	ssize_t n = read(f, buf, sizeof(buf) - 1);
	close(f);
	if (n <= 0)
		return -2;
	buf[n] = 0;
	char *p = strstr(buf, "\nPid:");
	return p ? atoi(p + 5) : -2;
}

static int fdinfo_pid(int fd)
{
	return fdinfo_pid_of(0, fd);
}

static int readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static int check_pidfd(void)
{
	const struct {
		int fd;
		pid_t pid;
		int nonblock, readable;
	} want[] = {
		{ 20, live, 0, 0 }, { 21, getpid(), 1, 0 }, { 22, zombie, 0, 1 }, { 23, -1, 0, 1 }, { 24, -1, 1, 1 },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		int fd = want[i].fd;
		int got = fdinfo_pid(fd);
		if (got != want[i].pid)
			return fail("fd %d: Pid %d, want %d", fd, got, (int)want[i].pid);
		int fl = fcntl(fd, F_GETFL);
		if (fl < 0 || !!(fl & O_NONBLOCK) != want[i].nonblock)
			return fail("fd %d: flags %#x", fd, fl);
		if (readable(fd) != want[i].readable)
			return fail("fd %d: readable %d, want %d", fd, !want[i].readable, want[i].readable);
	}
	if (syscall(SYS_pidfd_send_signal, 20, 0, NULL, 0) < 0 || syscall(SYS_pidfd_send_signal, 21, 0, NULL, 0) < 0)
		return fail("signal 0 through the live pidfds: %s", strerror(errno));
	if (syscall(SYS_pidfd_send_signal, 23, 0, NULL, 0) == 0 || errno != ESRCH)
		return fail("signal 0 to the process that is gone: not ESRCH");
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	if (waitid((idtype_t)P_PIDFD, 22, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
		return fail("waitid(P_PIDFD) of the zombie: %s", strerror(errno));
	if (si.si_pid != zombie || si.si_code != CLD_EXITED || si.si_status != 7)
		return fail("waitid(P_PIDFD) of the zombie: pid %d code %d status %d", si.si_pid, si.si_code,
			    si.si_status);
	return 0;
}

static int check_thread(void)
{
	const struct {
		int fd;
		pid_t tid;
	} want[] = { { 20, second }, { 21, getpid() } };
	for (size_t i = strcmp(which, "thread") != 0; i < sizeof(want) / sizeof(want[0]); i++) {
		int fd = want[i].fd;
		int got = fdinfo_pid(fd);
		if (got != want[i].tid)
			return fail("fd %d: Pid %d, want TID %d", fd, got, (int)want[i].tid);
		int fl = fcntl(fd, F_GETFL);
		if (fl < 0 || !(fl & PIDFD_THREAD))
			return fail("fd %d: flags %#x without PIDFD_THREAD", fd, fl);
		if (readable(fd))
			return fail("fd %d: readable while its thread runs", fd);
		if (syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) < 0)
			return fail("signal 0 through fd %d: %s", fd, strerror(errno));
	}
	if (live && fdinfo_pid_of(live, 20) != second)
		return fail("the child's fd 20: Pid %d, want TID %d", fdinfo_pid_of(live, 20), (int)second);
	if (fdinfo_pid(22) == third) {
		if (!(fcntl(22, F_GETFL) & PIDFD_THREAD))
			return fail("fd 22: no PIDFD_THREAD");
		if (readable(22))
			return fail("fd 22: readable before its thread exits");
		if (write(exit_pipe[1], "x", 1) != 1)
			return fail("telling the third thread to exit: %s", strerror(errno));
		struct pollfd p = { .fd = 22, .events = POLLIN };
		if (poll(&p, 1, 60000) != 1 || !(p.revents & POLLIN))
			return fail("fd 22 does not report its thread's exit");
	}
	if (fdinfo_pid(22) != -1)
		return fail("fd 22: Pid %d once its thread exited", fdinfo_pid(22));
	if (!readable(22))
		return fail("fd 22: not readable once its thread exited");
	if (syscall(SYS_pidfd_send_signal, 22, 0, NULL, 0) == 0 || errno != ESRCH)
		return fail("signal 0 to the thread that is gone: not ESRCH");
	return 0;
}

static void check(void)
{
	int r = 0;
	if (strcmp(which, "pidfd") == 0)
		r = check_pidfd();
	else if (strncmp(which, "thread", 6) == 0)
		r = check_thread();
	else if (fcntl(20, F_GETFD) < 0)
		r = fail("fd 20 is gone");
	if (r == 0)
		wl_result("PASS %s", which);
	else
		wl_result("FAIL %s: %s", which, why);
}

/* A child that pauses until killed, and dies with us. */
static pid_t paused_child(void)
{
	pid_t pid = fork();
	if (pid < 0)
		wl_die("fork");
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	return pid;
}

static void setup_pidfd(void)
{
	live = paused_child();
	zombie = fork();
	if (zombie == 0)
		_exit(7);
	gone = fork();
	if (gone == 0)
		_exit(0);
	if (zombie < 0 || gone < 0)
		wl_die("fork");
	pin(pidfd_open(live, 0), 20);
	pin(pidfd_open(getpid(), PIDFD_NONBLOCK), 21);
	pin(pidfd_open(zombie, 0), 22);
	pin(pidfd_open(gone, 0), 23);
	pin(pidfd_open(gone, PIDFD_NONBLOCK), 24);
	siginfo_t si;
	if (waitid(P_PID, (id_t)zombie, &si, WEXITED | WNOWAIT) < 0 || waitpid(gone, NULL, 0) != gone)
		wl_die("wait");
}

static void *second_thread(void *arg)
{
	(void)arg;
	second = (pid_t)syscall(SYS_gettid);
	for (;;)
		pause();
	return NULL;
}

static void *third_thread(void *arg)
{
	(void)arg;
	char c;
	third = (pid_t)syscall(SYS_gettid);
	while (read(exit_pipe[0], &c, 1) < 0 && errno == EINTR)
		;
	return NULL;
}

static void setup_thread(void)
{
	int p[2];
	if (pipe(p) < 0)
		wl_die("pipe");
	pin(p[0], exit_pipe[0]);
	pin(p[1], exit_pipe[1]);
	pthread_t th;
	if (pthread_create(&th, NULL, second_thread, NULL) != 0 || pthread_create(&th, NULL, third_thread, NULL) != 0)
		wl_die("pthread_create");
	while (!second || !third)
		usleep(1000);
	if (strcmp(which, "thread") == 0)
		pin(pidfd_open(second, PIDFD_THREAD), 20);
	pin(pidfd_open(getpid(), PIDFD_THREAD), 21);
	pin(pidfd_open(third, PIDFD_THREAD), 22);
	if (strcmp(which, "thread_epoll") == 0) {
		struct epoll_event ev = { .events = EPOLLIN };
		pin(epoll_create1(0), 25);
		if (epoll_ctl(25, EPOLL_CTL_ADD, 21, &ev) < 0)
			wl_die("epoll_ctl");
	}
	if (strcmp(which, "thread") != 0)
		return;
	/* a child holds them too (inherited): each task's fd of them is replaced */
	live = paused_child();
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	which = argc > 2 ? argv[2] : "pidfd";
	if (strcmp(which, "pidfd") == 0)
		setup_pidfd();
	else if (strcmp(which, "outside") == 0)
		pin(pidfd_open(1, 0), 20);
	else if (strncmp(which, "thread", 6) == 0)
		setup_thread();
	else if (strcmp(which, "outside_thread") == 0)
		pin(pidfd_open(1, PIDFD_THREAD), 20);
	else if (strcmp(which, "io_uring") == 0) {
		char params[120];
		memset(params, 0, sizeof(params));
		pin((int)syscall(SYS_io_uring_setup, 4, params), 20);
	} else if (strcmp(which, "userfaultfd") == 0)
		pin((int)syscall(SYS_userfaultfd, O_CLOEXEC), 20);
	else {
		fprintf(stderr, "unknown case %s\n", which);
		return 2;
	}
	wl_install_check_handler();
	wl_ready("case=%s live=%d zombie=%d second=%d third=%d", which, (int)live, (int)zombie, (int)second,
		 (int)third);
	for (;;) {
		wl_wait_check();
		check();
	}
}
