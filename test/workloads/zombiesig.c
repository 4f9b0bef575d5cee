/* Zombie children and the SIGCHLDs their parent had: a restore must give back exactly the
 * signals pending at the dump and deliver none that was not (criu's restore leaves none).
 * A SIGCHLD handler counts each delivery. One case per run (argv[2]):
 *   handled   two zombies (exit 3, SIGTERM), each SIGCHLD delivered to the handler
 *   threads   the same with two more threads, SIGCHLD unblocked in all of them
 *   pending   SIGCHLD blocked; a child that exited 5 and was reaped left it pending, then a
 *             zombie (exit 6) exited: one SIGCHLD pending, from the reaped child
 *   consumed  SIGCHLD blocked; a zombie (exit 6) exited and sigwaitinfo took its signal
 *   default   as consumed, with SIGCHLD at SIG_DFL
 *   group     handled, plus a group whose leader is gone holding a zombie (exit 4) the
 *             leader forked with CLONE_PARENT (ours, then: its SIGCHLD was ours too)
 *   subreaper handled, as a child subreaper, plus a zombie (exit 8) in a group whose leader
 *             is gone and one (exit 9) in such a group in a session whose leader is gone:
 *             each handed to us when its parent exited, which told us with a SIGCHLD
 * The check: the handler ran as often as before the dump, the pending SIGCHLD (if any)
 * is the one that was (sigtimedwait takes it, then it is queued again as it was) and
 * there is no second one, and every zombie is still ours with its status. */
#include "workload.h"

#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

static volatile sig_atomic_t deliveries;
static volatile pid_t last_from;

static void on_chld(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	deliveries++;
	last_from = si->si_pid;
}

static struct {
	pid_t pid;
	int code, status;
} zombies[4];
static int nzombies, want_deliveries;
/* the pending SIGCHLD's child, its exit status; 0 when none is pending */
static pid_t pending_from;
static int pending_status;
static sigset_t chld;

static void handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_chld;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		wl_die("sigaction");
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
}

/* A child that exits with `code` (or dies of signal -code); returns once it has. */
static pid_t child(int code)
{
	pid_t pid = fork();
	if (pid < 0)
		wl_die("fork");
	if (pid == 0) {
		if (code < 0) {
			signal(-code, SIG_DFL);
			raise(-code);
		}
		_exit(code);
	}
	siginfo_t si;
	if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) < 0)
		wl_die("waitid");
	return pid;
}

static void zombie(pid_t pid, int code)
{
	zombies[nzombies].pid = pid;
	zombies[nzombies].code = code < 0 ? CLD_KILLED : CLD_EXITED;
	zombies[nzombies++].status = code < 0 ? -code : code;
}

/* A zombie whose SIGCHLD the handler got (the signal blocked until then, so that it is
 * not delivered before we wait for it). */
static void delivered_zombie(int code)
{
	sigset_t old, none;
	sigprocmask(SIG_BLOCK, &chld, &old);
	zombie(child(code), code);
	sigemptyset(&none);
	want_deliveries++;
	while (deliveries < want_deliveries)
		sigsuspend(&none);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

static void setup_handled(void)
{
	handler();
	delivered_zombie(3);
	delivered_zombie(-SIGTERM);
}

static void *parked(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static void setup_threads(void)
{
	setup_handled();
	for (int i = 0; i < 2; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, parked, NULL))
			wl_die("pthread_create");
	}
}

static void setup_pending(void)
{
	handler();
	sigprocmask(SIG_BLOCK, &chld, NULL);
	pending_from = child(5);
	pending_status = 5;
	if (waitpid(pending_from, NULL, 0) != pending_from)
		wl_die("waitpid");
	zombie(child(6), 6);
}

static void take_zombie_signal(void)
{
	sigprocmask(SIG_BLOCK, &chld, NULL);
	zombie(child(6), 6);
	siginfo_t si;
	if (sigwaitinfo(&chld, &si) != SIGCHLD || si.si_pid != zombies[0].pid)
		wl_die("sigwaitinfo");
}

static void setup_consumed(void)
{
	handler();
	take_zombie_signal();
}

static void setup_default(void)
{
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	take_zombie_signal();
}

/* The SIGCHLDs of the children that went while SIGCHLD was blocked (`old` the mask
 * before): one delivery, however many there were. */
static void delivered_at_once(const sigset_t *old)
{
	sigset_t none;
	sigemptyset(&none);
	while (deliveries <= want_deliveries)
		sigsuspend(&none);
	sigprocmask(SIG_SETMASK, old, NULL);
	want_deliveries = deliveries;
}

/* A child makes a group of its own (with `session`: a session of its own, in which a
 * child of it makes a group of its own), forks a zombie (exit `code`) there and exits,
 * as its own child does: we reap both, and the zombie, in the gone leaders' session and
 * group, is ours: forked with CLONE_PARENT (`adopt`), or handed to us when its parent
 * exited (we are a child subreaper). */
static void orphan_zombie(int session, int adopt, int code)
{
	int fds[2];
	if (pipe(fds) < 0)
		wl_die("pipe");
	pid_t lead = fork(), gone[2] = { lead, 0 };
	if (lead < 0)
		wl_die("fork");
	if (lead == 0) {
		/* [0]: 0 for the zombie's PID, 1 for the inner leader's (the two come in any order) */
		pid_t sent[2] = { 1, 0 };
		if (session) {
			setsid();
			sent[1] = fork();
		}
		if (sent[1] <= 0) {
			setpgid(0, 0);
			sent[0] = 0;
			sent[1] = adopt ? (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0) : fork();
			if (sent[1] == 0)
				_exit(code);
		}
		_exit(write(fds[1], sent, sizeof(sent)) == sizeof(sent) ? 0 : 1);
	}
	pid_t z = 0;
	for (int i = 0; i < 1 + session; i++) {
		pid_t got[2];
		if (read(fds[0], got, sizeof(got)) != sizeof(got))
			wl_die("read");
		if (got[0])
			gone[1] = got[1];
		else
			z = got[1];
	}
	for (int i = 0; i < 1 + session; i++)
		if (waitpid(gone[i], NULL, 0) != gone[i])
			wl_die("waitpid");
	close(fds[0]);
	close(fds[1]);
	siginfo_t si;
	struct timespec ms = { 0, 1000000 };
	while (waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT) < 0)
		nanosleep(&ms, NULL);
	zombie(z, code);
}

static void setup_subreaper(void)
{
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		wl_die("prctl");
	setup_handled();
	sigset_t old;
	sigprocmask(SIG_BLOCK, &chld, &old);
	orphan_zombie(0, 0, 8);
	orphan_zombie(1, 0, 9);
	delivered_at_once(&old);
}

static void setup_group(void)
{
	setup_handled();
	sigset_t old;
	sigprocmask(SIG_BLOCK, &chld, &old);
	orphan_zombie(0, 1, 4);
	delivered_at_once(&old);
}

/* The pending SIGCHLD, checked and left pending; none when none was. */
static int pending_ok(void)
{
	siginfo_t si;
	int have = wl_pending_sigchld(&si);
	if (have < 0)
		return -1;
	if (have != (pending_from != 0))
		return wl_fail("SIGCHLD %s pending", have ? "is" : "is not");
	if (have && (si.si_pid != pending_from || si.si_code != CLD_EXITED || si.si_status != pending_status))
		return wl_fail("the pending SIGCHLD is from %d, code %d status %d (want %d, %d, %d)", si.si_pid,
			       si.si_code, si.si_status, pending_from, CLD_EXITED, pending_status);
	return 0;
}

static int check(void)
{
	if (deliveries != want_deliveries)
		return wl_fail("the SIGCHLD handler ran %d times (want %d), the last for %d", deliveries,
			       want_deliveries, last_from);
	if (pending_ok())
		return -1;
	for (int i = 0; i < nzombies; i++) {
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)zombies[i].pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
			return wl_fail("waitid(%d): %s", zombies[i].pid, strerror(errno));
		if (si.si_pid != zombies[i].pid || si.si_code != zombies[i].code || si.si_status != zombies[i].status)
			return wl_fail("zombie %d: pid %d code %d status %d", zombies[i].pid, si.si_pid, si.si_code,
				       si.si_status);
	}
	return 0;
}

static const struct wl_case cases[] = {
	{ "handled", setup_handled, check },	 { "threads", setup_threads, check },
	{ "pending", setup_pending, check },	 { "consumed", setup_consumed, check },
	{ "default", setup_default, check },	 { "group", setup_group, check },
	{ "subreaper", setup_subreaper, check },
};

int main(int argc, char **argv)
{
	return wl_run_case(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
