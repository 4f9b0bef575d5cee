/* Zombie children of every kind of death, never reaped: exit codes 0, 7 and 255, and
 * deaths by SIGKILL (sent by us: a process cannot catch it to say goodbye), SIGTERM,
 * SIGSEGV (not dumpable, so no core file and no core-dump bit) and a real-time signal.
 * On SIGUSR1 each must still be a zombie of ours whose wait status is the one it died
 * with: /proc/PID/stat's exit code, and what waitid(WNOWAIT) -- the parent's view --
 * reports: "PASS zombies=7" or "FAIL zombies: why" (the kids in that order, 255 last). The ready line names the pids:
 * "pids=p1,p2,... rt=N" (N the real-time signal's number).
 *
 * With "group" (argv[2]) there is also a group whose leader is gone: a child made a group
 * of its own, forked two processes into it with CLONE_PARENT (our children, then) and
 * exited, and we reaped it; of those two one exited with status 3 and stays a zombie,
 * the other pauses. Both must still be ours, in that group ("grouped=... leader=...").
 * "PASS zombies=7 group". */
#include "workload.h"

#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

enum { EXIT, SIGNAL, KILLED };

static struct {
	int how, value;
	pid_t pid;
} kids[] = {
	{ EXIT, 0, 0 },
	{ EXIT, 7, 0 },
	{ KILLED, SIGKILL, 0 },
	{ SIGNAL, SIGTERM, 0 },
	{ SIGNAL, SIGSEGV, 0 },
	{ SIGNAL, 0 /* SIGRTMIN+3 */, 0 },
	/* last: criu 4.x restores exit codes masked with 0x7f, so its check fails here only */
	{ EXIT, 255, 0 },
};
enum { RT = 5 };
enum { N = sizeof(kids) / sizeof(kids[0]) };

static int status_of(int i)
{
	return kids[i].how == EXIT ? kids[i].value << 8 : kids[i].value;
}

/* /proc/PID/stat: state, ppid and exit code (fields 3, 4, 52) */
static int stat_ok(int i)
{
	pid_t pid = kids[i].pid;
	char state;
	int ppid;
	long code;
	if (wl_proc_stat(pid, &state, &ppid, &code))
		return wl_fail("zombie %d is gone", pid);
	if (state != 'Z' || ppid != getpid() || code != status_of(i))
		return wl_fail("zombie %d: state %c, ppid %d, exit code %ld (want Z, %d, %d)", pid, state, ppid, code,
			       getpid(), status_of(i));
	return 0;
}

static pid_t leader, grouped_zombie, grouped_live;

static int group_ok(void)
{
	if (!leader)
		return 0;
	if (getpgid(grouped_zombie) != leader || getpgid(grouped_live) != leader)
		return wl_fail("group of gone leader %d: pgid %d and %d", leader, getpgid(grouped_zombie),
			       getpgid(grouped_live));
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)grouped_zombie, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid != grouped_zombie ||
	    si.si_code != CLD_EXITED || si.si_status != 3)
		return wl_fail("zombie %d of the group: pid %d code %d status %d (%s)", grouped_zombie, si.si_pid,
			       si.si_code, si.si_status, strerror(errno));
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)grouped_live, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid != 0)
		return wl_fail("%d of the group is not a running child of ours (%s)", grouped_live, strerror(errno));
	return 0;
}

/* The child that makes the group: two CLONE_PARENT children in it, then it exits. */
static void make_group(void)
{
	int fds[2];
	if (pipe(fds) < 0)
		wl_die("pipe");
	leader = fork();
	if (leader < 0)
		wl_die("fork");
	if (leader == 0) {
		setpgid(0, 0);
		pid_t z = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
		if (z == 0)
			_exit(3);
		pid_t l = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
		if (l == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (;;)
				pause();
		}
		pid_t both[2] = { z, l };
		_exit(write(fds[1], both, sizeof(both)) == sizeof(both) ? 0 : 1);
	}
	pid_t both[2];
	if (read(fds[0], both, sizeof(both)) != sizeof(both) || waitpid(leader, NULL, 0) != leader)
		wl_die("make the group");
	close(fds[0]);
	close(fds[1]);
	grouped_zombie = both[0];
	grouped_live = both[1];
	siginfo_t si;
	if (waitid(P_PID, (id_t)grouped_zombie, &si, WEXITED | WNOWAIT) < 0)
		wl_die("waitid");
}

static int check(void)
{
	if (group_ok())
		return -1;
	for (int i = 0; i < N; i++) {
		if (stat_ok(i))
			return -1;
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)kids[i].pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0)
			return wl_fail("waitid(%d): %s", kids[i].pid, strerror(errno));
		int code = kids[i].how == EXIT ? CLD_EXITED : CLD_KILLED;
		if (si.si_pid != kids[i].pid || si.si_code != code || si.si_status != kids[i].value)
			return wl_fail("waitid(%d): pid %d code %d status %d (want %d %d)", kids[i].pid, si.si_pid,
				       si.si_code, si.si_status, code, kids[i].value);
	}
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	kids[RT].value = SIGRTMIN + 3;
	char list[256] = "";
	for (int i = 0; i < N; i++) {
		pid_t pid = fork();
		if (pid < 0)
			wl_die("fork");
		if (pid == 0) {
			/* no core file, wherever core_pattern points */
			prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
			if (kids[i].how == EXIT)
				_exit(kids[i].value);
			if (kids[i].how == SIGNAL) {
				signal(kids[i].value, SIG_DFL);
				raise(kids[i].value);
			}
			for (;;)
				pause();
		}
		kids[i].pid = pid;
		if (kids[i].how == KILLED)
			kill(pid, SIGKILL);
		siginfo_t si;
		if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) < 0)
			wl_die("waitid");
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%d", i ? "," : "", pid);
	}
	int group = argc > 2 && strcmp(argv[2], "group") == 0;
	if (group)
		make_group();
	wl_ready("pids=%s rt=%d grouped=%d,%d leader=%d", list, kids[RT].value, grouped_zombie, grouped_live, leader);
	char name[32];
	snprintf(name, sizeof(name), "zombies=%d%s", N, group ? " group" : "");
	wl_serve_checks(name, check);
}
