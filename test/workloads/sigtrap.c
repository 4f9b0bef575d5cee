/* Signal state a dump must not disturb: its own SIGTRAP handler, SIGPIPE
 * ignored, SIGUSR2 and two real-time signals blocked with instances pending
 * (process-wide and thread-directed). With "trap-pending" SIGTRAP is blocked
 * too and one is pending; with "signalfd" it also holds a signalfd, and with
 * "unsupported" an io_uring instance (a dump refuses the task). It first moves to a uid of its own (argv: "uid=N") so
 * that SigQ in /proc/PID/status (pending signals of the whole user) counts only
 * its own. It waits in pause().
 * Self-check (SIGUSR1): handlers, mask and pending set are as set up; then a
 * pending SIGTRAP is let through and an int3 is executed, and each must reach
 * the handler (with SIG_DFL the task would die); the pending SIGTRAP is queued
 * again afterwards: "PASS traps=N". */
#include "workload.h"

#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>

static volatile sig_atomic_t traps;

static void on_trap(int sig)
{
	(void)sig;
	traps++;
}

static int trap_pending, use_signalfd, use_unsupported;
static sigset_t want_mask;

static void queue_pending(void)
{
	union sigval v = { .sival_int = 7 };
	kill(getpid(), SIGUSR2);
	sigqueue(getpid(), SIGRTMIN + 2, v);
	v.sival_int = 8;
	sigqueue(getpid(), SIGRTMIN + 2, v);
	syscall(SYS_tgkill, getpid(), gettid(), SIGRTMIN + 3);
	if (trap_pending)
		syscall(SYS_tgkill, getpid(), gettid(), SIGTRAP);
}

static const char *check(void)
{
	struct sigaction sa;
	if (sigaction(SIGTRAP, NULL, &sa) < 0 || sa.sa_handler != on_trap)
		return "SIGTRAP handler changed";
	if (sigaction(SIGPIPE, NULL, &sa) < 0 || sa.sa_handler != SIG_IGN)
		return "SIGPIPE no longer ignored";
	if (sigaction(SIGUSR1, NULL, &sa) < 0 || sa.sa_handler != wl_on_usr1)
		return "SIGUSR1 handler changed";
	sigset_t now, pend;
	sigprocmask(SIG_SETMASK, NULL, &now);
	for (int s = 1; s < NSIG; s++)
		if (sigismember(&now, s) != sigismember(&want_mask, s))
			return "signal mask changed";
	sigpending(&pend);
	if (!sigismember(&pend, SIGUSR2) || !sigismember(&pend, SIGRTMIN + 2) || !sigismember(&pend, SIGRTMIN + 3))
		return "a pending signal is gone";
	if (trap_pending != sigismember(&pend, SIGTRAP))
		return "pending SIGTRAP changed";
	int before = traps;
	if (trap_pending) {
		sigset_t t;
		sigemptyset(&t);
		sigaddset(&t, SIGTRAP);
		sigprocmask(SIG_UNBLOCK, &t, NULL); /* the pending one arrives here */
		__asm__ volatile("int3");
		sigprocmask(SIG_BLOCK, &t, NULL);
		syscall(SYS_tgkill, getpid(), gettid(), SIGTRAP);
		if (traps != before + 2)
			return "the pending SIGTRAP or the int3 did not reach the handler";
	} else {
		__asm__ volatile("int3");
		if (traps != before + 1)
			return "the int3 did not reach the handler";
	}
	return NULL;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	uid_t uid = 0;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "trap-pending") == 0)
			trap_pending = 1;
		else if (strcmp(argv[i], "signalfd") == 0)
			use_signalfd = 1;
		else if (strcmp(argv[i], "unsupported") == 0)
			use_unsupported = 1;
		else if (strncmp(argv[i], "uid=", 4) == 0)
			uid = (uid_t)strtoul(argv[i] + 4, NULL, 10);
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_trap;
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGTRAP, &sa, NULL) < 0)
		wl_die("sigaction SIGTRAP");
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&want_mask);
	sigaddset(&want_mask, SIGUSR2);
	sigaddset(&want_mask, SIGRTMIN + 2);
	sigaddset(&want_mask, SIGRTMIN + 3);
	if (trap_pending)
		sigaddset(&want_mask, SIGTRAP);
	if (use_signalfd) {
		sigset_t s;
		sigemptyset(&s);
		sigaddset(&s, SIGUSR2);
		if (signalfd(-1, &s, SFD_CLOEXEC) < 0)
			wl_die("signalfd");
	}
	char uring_params[120];
	memset(uring_params, 0, sizeof(uring_params));
	if (use_unsupported && syscall(SYS_io_uring_setup, 4, uring_params) < 0)
		wl_die("io_uring_setup");
	if (uid) {
		/* the result file is written as that uid */
		if (chmod(wl_dir, 0777) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
			wl_die("setresuid");
		prctl(PR_SET_DUMPABLE, 1);
	}
	sigprocmask(SIG_SETMASK, &want_mask, NULL);
	queue_pending();
	wl_ready("traps=%d", (int)traps);
	for (;;) {
		wl_wait_check();
		const char *bad = check();
		if (bad)
			wl_result("FAIL %s", bad);
		else
			wl_result("PASS traps=%d", (int)traps);
	}
}
