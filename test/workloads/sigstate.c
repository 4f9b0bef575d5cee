/* Signal and task state a dump saves: handlers with flags and masks (SIGHUP on the
 * alternate stack, SIGUSR2 SA_SIGINFO, SIGPIPE ignored), a blocked mask (SIGINT,
 * SIGQUIT, SIGRTMIN+2), a private pending SIGQUIT (tgkill) and a shared pending
 * SIGRTMIN+2 with value 1234 (sigqueue), a 64 KiB sigaltstack, ITIMER_REAL every
 * second, a POSIX timer (CLOCK_MONOTONIC, SIGRTMIN+1, value 77, 2 s interval),
 * umask 027, RLIMIT_NOFILE 512/1024, comm "sigstate-x", no_new_privs, PDEATHSIG 9.
 * Self-check (SIGUSR1): the same state read back ("PASS ..."). */
#include "workload.h"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

static char altstack[65536];
static volatile sig_atomic_t alarms, rts, hups;

static void on_alrm(int s)
{
	(void)s;
	alarms++;
}
static void on_rt(int s, siginfo_t *si, void *c)
{
	(void)s, (void)si, (void)c;
	rts++;
}
static void on_hup(int s)
{
	(void)s;
	hups++;
}
static void on_usr2(int s, siginfo_t *si, void *c)
{
	(void)s, (void)si, (void)c;
}

static void act(int sig, void *fn, int flags, int masked)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = fn;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	if (masked)
		sigaddset(&sa.sa_mask, masked);
	if (sigaction(sig, &sa, NULL) < 0)
		wl_die("sigaction");
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0 };
	if (sigaltstack(&ss, NULL) < 0)
		wl_die("sigaltstack");
	act(SIGHUP, on_hup, SA_ONSTACK, 0);
	act(SIGUSR2, on_usr2, SA_SIGINFO, SIGTERM);
	act(SIGALRM, on_alrm, SA_RESTART, 0);
	act(SIGRTMIN + 1, on_rt, SA_SIGINFO | SA_RESTART, 0);
	act(SIGRTMIN + 2, on_alrm, SA_RESTART, 0);
	signal(SIGPIPE, SIG_IGN);
	sigset_t blk;
	sigemptyset(&blk);
	sigaddset(&blk, SIGINT);
	sigaddset(&blk, SIGQUIT);
	sigaddset(&blk, SIGRTMIN + 2);
	sigprocmask(SIG_BLOCK, &blk, NULL);
	syscall(SYS_tgkill, getpid(), getpid(), SIGQUIT);
	union sigval v = { .sival_int = 1234 };
	sigqueue(getpid(), SIGRTMIN + 2, v);
	struct itimerval it = { { 1, 0 }, { 1, 0 } };
	setitimer(ITIMER_REAL, &it, NULL);
	struct sigevent sev;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGRTMIN + 1;
	sev.sigev_value.sival_ptr = (void *)77;
	timer_t tid;
	if (timer_create(CLOCK_MONOTONIC, &sev, &tid) < 0)
		wl_die("timer_create");
	struct itimerspec its = { { 2, 0 }, { 2, 0 } };
	timer_settime(tid, 0, &its, NULL);
	umask(027);
	struct rlimit rl = { 512, 1024 };
	setrlimit(RLIMIT_NOFILE, &rl);
	prctl(PR_SET_NAME, "sigstate-x");
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	wl_install_check_handler();
	wl_write_counter(0);
	wl_ready("altstack=%p hup=%p usr2=%p alrm=%p rt=%p sigrtmin=%d", (void *)altstack, (void *)on_hup,
		 (void *)on_usr2, (void *)on_alrm, (void *)on_rt, SIGRTMIN);
	unsigned long long n = 0;
	for (;;) {
		wl_write_counter(++n);
		if (wl_check_requested) {
			wl_check_requested = 0;
			const char *bad = NULL;
			sigset_t cur, pend;
			sigprocmask(SIG_BLOCK, NULL, &cur);
			sigpending(&pend);
			stack_t now;
			sigaltstack(NULL, &now);
			struct rlimit r;
			getrlimit(RLIMIT_NOFILE, &r);
			mode_t um = umask(027);
			char name[32] = "";
			prctl(PR_GET_NAME, name);
			if (!sigismember(&cur, SIGINT) || !sigismember(&cur, SIGQUIT) ||
			    !sigismember(&cur, SIGRTMIN + 2))
				bad = "blocked mask";
			else if (!sigismember(&pend, SIGQUIT) || !sigismember(&pend, SIGRTMIN + 2))
				bad = "pending signals";
			else if (now.ss_sp != altstack || now.ss_size != sizeof(altstack))
				bad = "sigaltstack";
			else if (r.rlim_cur != 512 || r.rlim_max != 1024)
				bad = "rlimit";
			else if (um != 027)
				bad = "umask";
			else if (strcmp(name, "sigstate-x") != 0)
				bad = "comm";
			else if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
				bad = "no_new_privs";
			if (bad)
				wl_result("FAIL %s", bad);
			else
				wl_result("PASS alarms=%d rt=%d", (int)alarms, (int)rts);
		}
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
	}
}
