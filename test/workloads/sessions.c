/* Sessions and groups no plain fork order makes again (as criu's zdtm session02):
 *
 *   root P          a child subreaper, its own session (setsid by the test's spawn)
 *    +- A           forked K, then B; made its own session after both
 *    |   +- C       B's session: B did setsid, forked C with CLONE_PARENT, exited
 *    |   +- K       P's session, forked before A's setsid
 *    |       +- N   P's session, in M's group (its leader in another branch)
 *    +- H           born in B's session (C forked G, G forked H and exited: H went to
 *    |   |          P, the subreaper); forked J, then made its own session
 *    |   +- J       B's session, under a parent of another session
 *    +- M           its own group in P's session
 *    +- R           in Q's group: Q did setpgid(0, 0), forked R with CLONE_PARENT, exited
 *
 * B's session is under two parents (A, H) with its leader gone; A and H lead sessions
 * made after their children of other sessions; groups Q (gone) and M (another branch).
 * Each counts in a MAP_SHARED region and notes its pid, ppid, pgid and sid; on SIGUSR1 the
 * root checks that all count on and sit where they sat, and that no process has the pid
 * of B, G or Q (no helper left): "PASS sessions=8" or "FAIL why". The ready line gives
 * every pid: "a=… b=… c=… g=… h=… j=… k=… m=… n=… q=… r=…". */
#include "slots.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

enum { P, A, C, K, N, H, J, M, R, NLIVE };
static const char *names[NLIVE] = { "P", "A", "C", "K", "N", "H", "J", "M", "R" };
enum { B, G, Q, NGONE };

static struct wl_slot *shared;
static atomic_int *gone; /* B's, G's and Q's pids */

static void run(int who)
{
	wl_tick_forever(&shared[who]);
}

/* Waits until `who` noted itself (its pid and where it sits at that moment). */
static void await(int who)
{
	while (atomic_load(&shared[who].count) == 0)
		usleep(1000);
}

static pid_t fork_or_die(int flags)
{
	pid_t pid = flags ? (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0) : fork();
	if (pid < 0)
		wl_die("fork");
	return pid;
}

/* A process of the tree that goes with its parent once it sits under it. */
static void live(int who, pid_t parent)
{
	while (getppid() != parent)
		usleep(1000);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	run(who);
}

/* C: forks G, which forks H and exits; H goes to P (A is no subreaper), forks J, setsid. */
static void make_c(pid_t a, pid_t p)
{
	pid_t g = fork_or_die(0);
	if (g == 0) {
		atomic_store(&gone[G], getpid());
		if (fork_or_die(0) == 0) {
			while (getppid() != p)
				usleep(1000);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (fork_or_die(0) == 0)
				live(J, shared[H].pid ? shared[H].pid : getppid());
			if (setsid() < 0)
				wl_die("setsid of H");
			run(H);
		}
		_exit(0);
	}
	if (waitpid(g, NULL, 0) != g)
		wl_die("waitpid G");
	live(C, a);
}

static void make_a(pid_t p)
{
	pid_t a = getpid();
	if (fork_or_die(0) == 0) {
		if (fork_or_die(0) == 0) {
			await(M);
			if (setpgid(0, shared[M].pid) < 0)
				wl_die("setpgid into M's group");
			live(N, shared[K].pid ? shared[K].pid : getppid());
		}
		live(K, a);
	}
	pid_t b = fork_or_die(0);
	if (b == 0) {
		if (setsid() < 0)
			wl_die("setsid of B");
		if (fork_or_die(CLONE_PARENT) == 0)
			make_c(a, p);
		_exit(0);
	}
	atomic_store(&gone[B], b);
	if (waitpid(b, NULL, 0) != b)
		wl_die("waitpid B");
	await(K);
	if (setsid() < 0)
		wl_die("setsid of A");
	live(A, p);
}

static int check(char *why, size_t len)
{
	struct wl_slot *s = shared;
	int p = s[P].pid, a = s[A].pid, b = gone[B], h = s[H].pid, m = s[M].pid, q = gone[Q];
	struct wl_where want[] = {
		{ A, p, a, a }, { C, a, b, b }, { K, a, p, p }, { N, s[K].pid, m, p },
		{ H, p, h, h }, { J, h, b, b }, { M, p, m, p }, { R, p, q, p },
	};
	if (wl_slots_check(shared, NLIVE, P, names, want, sizeof(want) / sizeof(want[0]), why, len))
		return -1;
	for (int i = 0; i < NGONE; i++)
		if (kill(gone[i], 0) == 0)
			return snprintf(why, len, "a process has the pid %d of a gone process", gone[i]), -1;
	return wl_nothing_to_reap(why, len);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	shared = wl_slots_root();
	gone = (atomic_int *)(shared + NLIVE);
	pid_t p = getpid();
	wl_tick(&shared[P]);
	if (fork_or_die(0) == 0) {
		if (setpgid(0, 0) < 0)
			wl_die("setpgid of M");
		live(M, p);
	}
	await(M);
	if (fork_or_die(0) == 0)
		make_a(p);
	pid_t q = fork_or_die(0);
	if (q == 0) {
		if (setpgid(0, 0) < 0)
			wl_die("setpgid of Q");
		if (fork_or_die(CLONE_PARENT) == 0)
			live(R, p);
		_exit(0);
	}
	gone[Q] = q;
	if (waitpid(q, NULL, 0) != q)
		wl_die("waitpid Q");
	/* every process where it stays: H under P, A a session leader, J under H */
	for (int tries = 0; tries < 5000; tries++) {
		int all = 1;
		for (int i = 0; i < NLIVE; i++)
			if (atomic_load(&shared[i].count) == 0)
				all = 0;
		if (all && shared[H].sid == shared[H].pid && shared[A].sid == shared[A].pid &&
		    shared[J].ppid == shared[H].pid)
			break;
		usleep(2000);
	}
	char why[200] = "";
	if (check(why, sizeof(why)))
		wl_die(why);
	wl_ready("a=%d b=%d c=%d g=%d h=%d j=%d k=%d m=%d n=%d q=%d r=%d", shared[A].pid, gone[B], shared[C].pid,
		 gone[G], shared[H].pid, shared[J].pid, shared[K].pid, shared[M].pid, shared[N].pid, gone[Q],
		 shared[R].pid);
	for (;;) {
		wl_wait_check();
		why[0] = 0;
		if (check(why, sizeof(why)))
			wl_result("FAIL %s", why);
		else
			wl_result("PASS sessions=%d", NLIVE - 1);
	}
}
