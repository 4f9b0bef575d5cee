/* Sessions and groups whose leaders are gone, as a daemonizing program leaves them:
 *
 *   root P        a child subreaper, its own session (setsid by the test's spawn)
 *    +- D         daemonized: its parent A did setsid() and forked it, then exited;
 *    |   |        D is in A's session and group (A's pid), reparented to P
 *    |   +- E     D's child, in A's session and group as well
 *    +- M         its parent L did setpgid(0, 0) and forked it, then exited; M is in
 *                 L's group (L's pid) in P's session, reparented to P
 *
 * P reaps A and L at once, so their pids are free at dump time: no process of the
 * tree leads A's session or L's group, and a restore must make them (criu makes a
 * helper process that exits again). Each counts in a MAP_SHARED region and notes its
 * pid, ppid, pgid and sid; on SIGUSR1 the root checks that all count on and sit where
 * they sat: "PASS daemon=3" or "FAIL why". The ready line: "a=… d=… e=… l=… m=…". */
#include "slots.h"

enum { P, D, E, M, N };
static const char *names[N] = { "P", "D", "E", "M" };

static struct wl_slot *shared;
static atomic_int *leaders; /* [0] A's pid, [1] L's pid, [2] P's pid */

static void run(int who)
{
	wl_tick_forever(&shared[who]);
}

/* A short-lived leader: makes a session (or a group), forks `who` into it, exits. */
static pid_t leader(int session, int who)
{
	pid_t pid = fork();
	if (pid < 0)
		wl_die("fork");
	if (pid > 0)
		return pid;
	if (session ? setsid() < 0 : setpgid(0, 0) < 0)
		_exit(1);
	pid_t child = fork();
	if (child < 0)
		_exit(1);
	if (child == 0) {
		/* the tree goes with its root, so that no test leaves a process behind: once
		 * the leader is gone and P is the parent (set earlier, the leader's exit
		 * would kill it) */
		while (getppid() != leaders[2])
			usleep(1000);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (who == D) {
			pid_t e = fork();
			if (e == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				run(E);
			}
		}
		run(who);
	}
	_exit(0);
}

static int check(char *why, size_t len)
{
	struct wl_slot *s = shared;
	int a = leaders[0], l = leaders[1];
	struct wl_where want[] = {
		{ D, s[P].pid, a, a },
		{ E, s[D].pid, a, a },
		{ M, s[P].pid, l, s[P].sid },
	};
	if (wl_slots_check(shared, N, P, names, want, sizeof(want) / sizeof(want[0]), why, len))
		return -1;
	/* the leaders' pids are free again: nobody is left of the helpers a restore made */
	if (kill(a, 0) == 0 || kill(l, 0) == 0)
		return snprintf(why, len, "a process has the pid of a gone leader (%d or %d)", a, l), -1;
	return wl_nothing_to_reap(why, len);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	shared = wl_slots_root();
	leaders = (atomic_int *)(shared + N);
	leaders[2] = getpid();
	wl_tick(&shared[P]);
	leaders[0] = leader(1, D);
	leaders[1] = leader(0, M);
	for (int i = 0; i < 2; i++)
		if (waitpid(leaders[i], NULL, 0) != leaders[i])
			wl_die("waitpid");
	for (int tries = 0; tries < 1000; tries++) {
		int all = 1;
		for (int i = 0; i < N; i++)
			if (i != P &&
			    (atomic_load(&shared[i].count) == 0 || atomic_load(&shared[i].ppid) == leaders[0] ||
			     atomic_load(&shared[i].ppid) == leaders[1]))
				all = 0;
		if (all)
			break;
		usleep(2000);
	}
	wl_ready("a=%d d=%d e=%d l=%d m=%d", leaders[0], shared[D].pid, shared[E].pid, leaders[1], shared[M].pid);
	for (;;) {
		wl_wait_check();
		char why[200] = "";
		if (check(why, sizeof(why)))
			wl_result("FAIL %s", why);
		else
			wl_result("PASS daemon=%d", N - 1);
	}
}
