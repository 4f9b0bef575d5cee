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
 *   outside    a pidfd of pid 1, outside any tree we are dumped in
 *   thread     a thread pidfd of ourselves (PIDFD_THREAD)
 *   io_uring   an io_uring instance
 *   userfaultfd a userfaultfd
 *
 * The cases other than pidfd are refused by a dump: their check says the fd is there and
 * the task runs ("PASS <case>"). The ready line names the pids: "live=… zombie=…". */
#include "workload.h"

#include <poll.h>
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

/* The "Pid:" of fd's fdinfo, or -2. */
static int fdinfo_pid(int fd)
{
	char path[64], buf[512];
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

static void check(void)
{
	int r = 0;
	if (strcmp(which, "pidfd") == 0)
		r = check_pidfd();
	else if (fcntl(20, F_GETFD) < 0)
		r = fail("fd 20 is gone");
	if (r == 0)
		wl_result("PASS %s", which);
	else
		wl_result("FAIL %s: %s", which, why);
}

static void setup_pidfd(void)
{
	live = fork();
	if (live < 0)
		wl_die("fork");
	if (live == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
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

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	which = argc > 2 ? argv[2] : "pidfd";
	if (strcmp(which, "pidfd") == 0)
		setup_pidfd();
	else if (strcmp(which, "outside") == 0)
		pin(pidfd_open(1, 0), 20);
	else if (strcmp(which, "thread") == 0)
		pin(pidfd_open(getpid(), PIDFD_THREAD), 20);
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
	wl_ready("case=%s live=%d zombie=%d", which, (int)live, (int)zombie);
	for (;;) {
		wl_wait_check();
		check();
	}
}
