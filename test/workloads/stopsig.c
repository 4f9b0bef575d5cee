/* A stopped child and the SIGCHLDs and wait statuses its parent had: a restore stops the
 * child again, which must not tell the parent of a stop it knew of already (a SIGCHLD
 * with CLD_STOPPED its handler would run for once more) nor drop the one it had pending.
 * A SIGCHLD handler (SA_SIGINFO) counts deliveries by si_code. The child is stopped by
 * SIGSTOP, one case per run (argv[2]):
 *   consumed   the handler got the CLD_STOPPED and waitpid(WUNTRACED) took the stop
 *   waiting    the handler got it, the parent has not waited for the stop yet
 *   nocldstop  the handler has SA_NOCLDSTOP: no signal came; not waited for either
 *   pending    SIGCHLD blocked: its CLD_STOPPED pending, not waited for
 * The check: the handler ran as often as before the dump, with CLD_STOPPED only; the
 * pending SIGCHLD (if any) is the child's CLD_STOPPED for SIGSTOP (sigtimedwait takes it,
 * then it is queued again as it was) and there is no second one; the child is stopped;
 * the stop is still there for waitid(WSTOPPED) where it was not waited for. "consumed"
 * reports whether the stop can be waited for again ("PASS consumed wait=none|stopped"):
 * no image tells that the parent took it, so a restore (criu's too) gives it back.
 * The ready line names the child: "case=NAME child=PID". */
#include "workload.h"

#include <sys/wait.h>

static volatile sig_atomic_t stopped_deliveries, other_deliveries;

static void on_chld(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	if (si->si_code == CLD_STOPPED)
		stopped_deliveries++;
	else
		other_deliveries++;
}

static pid_t kid;
static int want_deliveries, pending, waited;
static sigset_t chld;

static void handler(int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_chld;
	sa.sa_flags = SA_SIGINFO | SA_RESTART | flags;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		wl_die("sigaction");
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
}

/* Forks the child (it waits to be stopped, then forever) and stops it; returns once the
 * stop is there to wait for. */
static void stop_child(void)
{
	kid = fork();
	if (kid < 0)
		wl_die("fork");
	if (kid == 0) {
		for (;;)
			pause();
	}
	if (kill(kid, SIGSTOP) < 0)
		wl_die("kill");
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)kid, &si, WSTOPPED | WNOWAIT) < 0 || si.si_code != CLD_STOPPED)
		wl_die("waitid");
}

/* The stop with its SIGCHLD delivered to the handler (blocked until then, so that it is
 * not delivered before we wait for it). */
static void stop_delivered(void)
{
	sigset_t old, none;
	handler(0);
	sigprocmask(SIG_BLOCK, &chld, &old);
	stop_child();
	sigemptyset(&none);
	want_deliveries = 1;
	while (stopped_deliveries < want_deliveries)
		sigsuspend(&none);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

static void setup_consumed(void)
{
	stop_delivered();
	int status;
	if (waitpid(kid, &status, WUNTRACED) != kid || !WIFSTOPPED(status) || WSTOPSIG(status) != SIGSTOP)
		wl_die("waitpid");
	waited = 1;
}

static void setup_waiting(void)
{
	stop_delivered();
}

static void setup_nocldstop(void)
{
	handler(SA_NOCLDSTOP);
	stop_child();
}

static void setup_pending(void)
{
	handler(0);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	stop_child();
	pending = 1;
}

/* The pending SIGCHLD, checked and left pending; none when none was. */
static int pending_ok(void)
{
	siginfo_t si;
	int have = wl_pending_sigchld(&si);
	if (have < 0)
		return -1;
	if (have != pending)
		return wl_fail("SIGCHLD %s pending", have ? "is" : "is not");
	if (have && (si.si_pid != kid || si.si_code != CLD_STOPPED || si.si_status != SIGSTOP))
		return wl_fail("the pending SIGCHLD is from %d, code %d status %d (want %d, %d, %d)", si.si_pid,
			       si.si_code, si.si_status, kid, CLD_STOPPED, SIGSTOP);
	return 0;
}

static int check(const char *name)
{
	if (stopped_deliveries != want_deliveries || other_deliveries)
		return wl_fail("the SIGCHLD handler ran %d times for CLD_STOPPED (want %d), %d for others",
			       stopped_deliveries, want_deliveries, other_deliveries);
	if (pending_ok())
		return -1;
	char state = 0;
	int ppid = 0;
	long code;
	if (wl_proc_stat(kid, &state, &ppid, &code) < 0 || state != 'T' || ppid != getpid())
		return wl_fail("child %d: state %c, parent %d", kid, state, ppid);
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)kid, &si, WSTOPPED | WNOHANG | WNOWAIT) < 0)
		return wl_fail("waitid(%d): %s", kid, strerror(errno));
	int stop = si.si_pid == kid && si.si_code == CLD_STOPPED && si.si_status == SIGSTOP;
	if (!stop && si.si_pid)
		return wl_fail("waitid(%d): pid %d code %d status %d", kid, si.si_pid, si.si_code, si.si_status);
	if (waited)
		return wl_fail("%s wait=%s", name, stop ? "stopped" : "none"), 0;
	return stop ? 0 : wl_fail("the stop of %d is not there to wait for", kid);
}

static int check_consumed(void)
{
	return check("consumed");
}

static int check_other(void)
{
	return check(NULL);
}

static const struct wl_case cases[] = {
	{ "consumed", setup_consumed, check_consumed },
	{ "waiting", setup_waiting, check_other },
	{ "nocldstop", setup_nocldstop, check_other },
	{ "pending", setup_pending, check_other },
};

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	for (size_t i = 0; argc > 2 && i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (strcmp(argv[2], cases[i].name) != 0)
			continue;
		wl_install_check_handler();
		cases[i].setup();
		wl_ready("case=%s child=%d", cases[i].name, (int)kid);
		wl_serve_checks(cases[i].name, cases[i].check);
	}
	fprintf(stderr, "%s: which case? consumed waiting nocldstop pending\n", argv[0]);
	return 2;
}
