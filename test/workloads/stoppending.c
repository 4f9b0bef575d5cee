/* Children stopped with a stop signal still pending, as zdtm's stopped01/02/12 leave theirs:
 * a stop signal sent to a stopped task stays queued until SIGCONT flushes it.
 *   "shared": stopped by SIGSTOP, then SIGSTOP again with kill() (pending for the process);
 *   "thread": two threads, stopped by SIGSTOP, then SIGSTOP with tgkill() to its second
 *             thread (pending for that thread alone);
 *   "tstp":   in a process group of its own (not orphaned, so SIGTSTP stops it), stopped by
 *             SIGTSTP, then SIGSTOP with tkill() (pending for it) and SIGTSTP with kill()
 *             (pending for the process).
 * Each child answers a byte on its reply pipe for every byte on its request pipe ("thread":
 * its second thread answers). The check (SIGUSR1) finds each child stopped (state T, and
 * waitid(WSTOPPED|WNOWAIT) reports CLD_STOPPED with its stop signal); then it continues each
 * one (SIGCONT flushes the pending stop signals), has it answer, and stops it again as it
 * was, pending signals included:
 * "PASS stopped=3" or "FAIL stoppending: why". The ready line names the children:
 * "shared=P thread=P tstp=P tid=T" (T: the second thread of "thread"). */
#include "workload.h"

#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

enum { SHARED, THREAD, TSTP, N };

static const char *names[N] = { "shared", "thread", "tstp" };
static const int stop_sig[N] = { SIGSTOP, SIGSTOP, SIGTSTP };

static struct {
	pid_t pid;
	int request, reply;
} kids[N];

static pid_t second_tid; /* the answering thread of "thread" */

/* Answers each request byte with one reply byte, forever. */
static void serve(int request, int reply)
{
	for (;;) {
		char c;
		ssize_t n = read(request, &c, 1);
		if (n == 1 && write(reply, &c, 1) != 1)
			_exit(3);
		if (n == 0)
			_exit(0);
	}
}

/* "thread": its pipes, which its second thread serves, and where that thread tells its TID */
static int thread_request, thread_reply, thread_tid_out;

static void *second_thread(void *arg)
{
	(void)arg;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	if (write(thread_tid_out, &tid, sizeof(tid)) != sizeof(tid))
		_exit(4);
	serve(thread_request, thread_reply);
	return NULL;
}

/* "thread": the main thread waits, the second one answers. */
static void thread_child(void)
{
	pthread_t th;
	if (pthread_create(&th, NULL, second_thread, NULL) != 0)
		_exit(5);
	for (;;)
		pause();
}

/* Stops child i by its signal, waits until it is stopped, then queues its pending signals. */
static int stop_with_pending(int i)
{
	pid_t pid = kids[i].pid;
	if (kill(pid, stop_sig[i]) < 0)
		return wl_fail("kill(%s %d, %d): %s", names[i], pid, stop_sig[i], strerror(errno));
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	while (waitid(P_PID, (id_t)pid, &si, WSTOPPED | WNOWAIT) < 0)
		if (errno != EINTR)
			return wl_fail("waitid(%s %d): %s", names[i], pid, strerror(errno));
	int r;
	if (i == SHARED)
		r = kill(pid, SIGSTOP);
	else if (i == THREAD)
		r = (int)syscall(SYS_tgkill, pid, second_tid, SIGSTOP);
	else if ((r = (int)syscall(SYS_tkill, pid, SIGSTOP)) == 0)
		r = kill(pid, SIGTSTP);
	if (r < 0)
		return wl_fail("queueing the pending stop signal of %s %d: %s", names[i], pid, strerror(errno));
	return 0;
}

static int stopped_ok(int i)
{
	pid_t pid = kids[i].pid;
	char state;
	int ppid;
	long code;
	if (wl_proc_stat(pid, &state, &ppid, &code))
		return wl_fail("%s %d is gone", names[i], pid);
	if (state != 'T' || ppid != getpid())
		return wl_fail("%s %d: state %c, ppid %d (want T, %d)", names[i], pid, state, ppid, getpid());
	/* The leader reads T once it has stopped itself; the stop is reported to the parent
	 * only once every thread has (a restored "thread" child's second thread may still be
	 * on its way): asked again for up to 10 s while nothing is reported yet. */
	siginfo_t si;
	int r;
	for (int ms = 0;; ms++) {
		memset(&si, 0, sizeof(si));
		r = waitid(P_PID, (id_t)pid, &si, WSTOPPED | WNOHANG | WNOWAIT);
		if (r < 0 || si.si_pid != 0 || ms == 10000)
			break;
		usleep(1000);
	}
	if (r < 0 || si.si_pid != pid || si.si_code != CLD_STOPPED || si.si_status != stop_sig[i])
		return wl_fail("%s %d: waitid reports pid %d code %d status %d (want %d %d)", names[i], pid, si.si_pid,
			       si.si_code, si.si_status, CLD_STOPPED, stop_sig[i]);
	return 0;
}

/* Continues child i, has it answer within 10 s, and stops it again. */
static int answers(int i)
{
	pid_t pid = kids[i].pid;
	if (kill(pid, SIGCONT) < 0)
		return wl_fail("SIGCONT to %s %d: %s", names[i], pid, strerror(errno));
	if (write(kids[i].request, "r", 1) != 1)
		return wl_fail("request to %s %d: %s", names[i], pid, strerror(errno));
	struct pollfd p = { .fd = kids[i].reply, .events = POLLIN };
	int n;
	while ((n = poll(&p, 1, 10000)) < 0 && errno == EINTR)
		;
	char c, state = '?';
	if (n != 1 || read(kids[i].reply, &c, 1) != 1) {
		int ppid;
		long code;
		wl_proc_stat(pid, &state, &ppid, &code);
		return wl_fail("%s %d did not answer once continued (state %c)", names[i], pid, state);
	}
	return stop_with_pending(i);
}

static int check(void)
{
	for (int i = 0; i < N; i++)
		if (stopped_ok(i) || answers(i) || stopped_ok(i))
			return -1;
	snprintf(wl_failure, sizeof(wl_failure), "stopped=%d", N);
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	for (int i = 0; i < N; i++) {
		int req[2], rep[2], tid_pipe[2];
		if (pipe(req) < 0 || pipe(rep) < 0 || pipe(tid_pipe) < 0)
			wl_die("pipe");
		pid_t pid = fork();
		if (pid < 0)
			wl_die("fork");
		if (pid == 0) {
			signal(SIGUSR1, SIG_DFL);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (int j = 0; j < i; j++) {
				close(kids[j].request);
				close(kids[j].reply);
			}
			close(req[1]);
			close(rep[0]);
			if (i == TSTP)
				setpgid(0, 0);
			if (i != THREAD)
				serve(req[0], rep[1]);
			thread_request = req[0];
			thread_reply = rep[1];
			thread_tid_out = tid_pipe[1];
			thread_child();
		}
		/* on both sides, whichever runs first: the SIGTSTP below must find the group made */
		if (i == TSTP)
			setpgid(pid, pid);
		close(req[0]);
		close(rep[1]);
		kids[i] = (typeof(kids[i])){ pid, req[1], rep[0] };
		if (i == THREAD && read(tid_pipe[0], &second_tid, sizeof(second_tid)) != sizeof(second_tid))
			wl_die("read of the second thread's tid");
		close(tid_pipe[0]);
		close(tid_pipe[1]);
		if (stop_with_pending(i))
			wl_die(wl_failure);
	}
	wl_ready("shared=%d thread=%d tstp=%d tid=%d", kids[SHARED].pid, kids[THREAD].pid, kids[TSTP].pid, second_tid);
	wl_serve_checks("stoppending", check);
}
