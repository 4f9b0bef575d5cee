/* A small process tree that checks itself across a checkpoint:
 *
 *   root P        its own session (setsid by the test's spawn) and group
 *    +- child A   setpgid(0, 0): a group of its own in P's session
 *    +- child B   setsid(): a session and group of its own
 *        +- grandchild G   in B's session and group
 *    +- child C   stays in P's group
 *
 * and two zombies of P's: one that exited with status 7, one killed by SIGTERM, which P
 * never reaps. P holds /proc/C/stat open (a file of another process of the tree).
 *
 * They share a MAP_SHARED anonymous region (made before the forks) where each counts
 * and notes its own pid, ppid, pgid and sid; a file opened once before the forks (one
 * open file description: its offset moves for all); and a pipe from P to A holding
 * bytes nobody reads. On SIGUSR1 the root checks that every process counts on, sits
 * where it sat in the tree, that the shared file offset is shared, and that the pipe
 * still holds its bytes: "PASS tree=5" or "FAIL why". The ready line names the pids:
 * "a=… b=… g=… c=…". Each child dies with its parent (PR_SET_PDEATHSIG), which the
 * dump keeps too. */
#include "workload.h"

#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

enum { P, A, B, G, C, N };
static const char *names[N] = { "P", "A", "B", "G", "C" };

struct slot {
	atomic_ulong count;
	atomic_int pid, ppid, pgid, sid;
	atomic_int failed;
};

static struct slot *shared;
static int shared_fd; /* one open file description for all */
static int pipe_fds[2];
static int a_read_fd; /* A's read end of the pipe (the number P had for it) */
static pid_t zombie_exit, zombie_signal;
static int c_stat_fd; /* P's fd of /proc/C/stat: a file of another process of the tree */

/* A zombie child of ours: state Z, its parent us, the wait status `status`. */
static int zombie_ok(pid_t pid, int status, char *why, size_t len)
{
	char state;
	int ppid;
	long exit_code;
	if (wl_proc_stat(pid, &state, &ppid, &exit_code))
		return snprintf(why, len, "zombie %d is gone", pid), -1;
	if (state != 'Z' || ppid != getpid() || exit_code != status)
		return snprintf(why, len, "zombie %d: state %c, ppid %d, exit code %ld (want Z, %d, %d)", pid, state,
				ppid, exit_code, getpid(), status),
		       -1;
	return 0;
}

static void note(int who)
{
	struct slot *s = &shared[who];
	atomic_store(&s->pid, getpid());
	atomic_store(&s->ppid, getppid());
	atomic_store(&s->pgid, getpgid(0));
	atomic_store(&s->sid, getsid(0));
}

static void tick(int who)
{
	note(who);
	atomic_fetch_add(&shared[who].count, 1);
}

static void run(int who)
{
	for (;;) {
		tick(who);
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

static pid_t fork_as(int who, void (*setup)(void))
{
	pid_t pid = fork();
	if (pid < 0)
		wl_die("fork");
	if (pid == 0) {
		/* the tree goes with its root (and G with B): no test leaves a process behind */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (setup)
			setup();
		if (who == B) {
			if (fork_as(G, NULL) < 0)
				_exit(1);
		}
		if (who != A)
			close(pipe_fds[0]);
		close(pipe_fds[1]);
		run(who);
	}
	return pid;
}

static void own_group(void)
{
	setpgid(0, 0);
}

static void own_session(void)
{
	setsid();
}

static int check(char *why, size_t len)
{
	unsigned long before[N];
	for (int i = 0; i < N; i++)
		before[i] = atomic_load(&shared[i].count);
	for (int tries = 0; tries < 500; tries++) {
		int all = 1;
		tick(P);
		for (int i = 0; i < N; i++)
			if (atomic_load(&shared[i].count) < before[i] + 2)
				all = 0;
		if (all)
			break;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	for (int i = 0; i < N; i++)
		if (atomic_load(&shared[i].count) < before[i] + 2)
			return snprintf(why, len, "%s stands still", names[i]), -1;
	struct slot *s = shared;
	int p = s[P].pid, a = s[A].pid, b = s[B].pid, psid = s[P].sid, ppgid = s[P].pgid;
	struct {
		int who, ppid, pgid, sid;
	} want[] = {
		{ A, p, a, psid },
		{ B, p, b, b },
		{ G, b, b, b },
		{ C, p, ppgid, psid },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct slot *x = &s[want[i].who];
		if (x->ppid != want[i].ppid || x->pgid != want[i].pgid || x->sid != want[i].sid)
			return snprintf(why, len, "%s: ppid %d pgid %d sid %d, want %d %d %d", names[want[i].who],
					x->ppid, x->pgid, x->sid, want[i].ppid, want[i].pgid, want[i].sid),
			       -1;
	}
	if (zombie_ok(zombie_exit, 7 << 8, why, len) || zombie_ok(zombie_signal, SIGTERM, why, len))
		return -1;
	/* P's fd of /proc/C/stat tells C's own pid (opened again at restore, once C was made) */
	char stat[256];
	ssize_t got = pread(c_stat_fd, stat, sizeof(stat) - 1, 0);
	stat[got > 0 ? got : 0] = 0;
	if (got <= 0 || atoi(stat) != s[C].pid)
		return snprintf(why, len, "P's fd of /proc/C/stat reads \"%.20s\"", stat), -1;
	/* the shared offset: a write here moves it for all (one description) */
	off_t at = lseek(shared_fd, 0, SEEK_CUR);
	if (write(shared_fd, "x", 1) != 1)
		return snprintf(why, len, "write to the shared file: %s", strerror(errno)), -1;
	char link[64];
	snprintf(link, sizeof(link), "/proc/%d/fdinfo/%d", a, shared_fd);
	FILE *f = fopen(link, "re");
	long pos = -1;
	if (f) {
		if (fscanf(f, "pos: %ld", &pos) != 1)
			pos = -1;
		fclose(f);
	}
	if (pos != at + 1)
		return snprintf(why, len, "A's offset of the shared file is %ld, P's %ld", pos, (long)at + 1), -1;
	/* the pipe to A still holds its bytes (read through a new read end, nothing taken) */
	snprintf(link, sizeof(link), "/proc/%d/fd/%d", a, a_read_fd);
	int rd = open(link, O_RDONLY | O_NONBLOCK);
	char buf[32] = "";
	ssize_t n = rd < 0 ? -1 : read(rd, buf, sizeof(buf) - 1);
	if (rd >= 0)
		close(rd);
	if (n != 10 || memcmp(buf, "P->A bytes", 10) != 0)
		return snprintf(why, len, "the pipe to A holds %zd bytes", n), -1;
	if (write(pipe_fds[1], buf, 10) != 10) /* put them back for the next check */
		return snprintf(why, len, "write to the pipe: %s", strerror(errno)), -1;
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shared == MAP_FAILED)
		wl_die("mmap");
	char path[4096];
	snprintf(path, sizeof(path), "%s/shared-file", wl_dir);
	shared_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (shared_fd < 0 || pipe(pipe_fds) < 0)
		wl_die("open/pipe");
	if (write(pipe_fds[1], "P->A bytes", 10) != 10)
		wl_die("write pipe");
	note(P);
	fork_as(A, own_group);
	fork_as(B, own_session);
	pid_t c = fork_as(C, NULL);
	snprintf(path, sizeof(path), "/proc/%d/stat", c);
	c_stat_fd = open(path, O_RDONLY);
	if (c_stat_fd < 0)
		wl_die("open /proc/C/stat");
	zombie_exit = fork();
	if (zombie_exit == 0)
		_exit(7);
	zombie_signal = fork();
	if (zombie_signal == 0) {
		signal(SIGTERM, SIG_DFL);
		raise(SIGTERM);
		_exit(0);
	}
	/* both gone before the ready line, never reaped */
	siginfo_t info;
	waitid(P_PID, (id_t)zombie_exit, &info, WEXITED | WNOWAIT);
	waitid(P_PID, (id_t)zombie_signal, &info, WEXITED | WNOWAIT);
	/* P keeps the write end; A the read end (the number P had for it) */
	a_read_fd = pipe_fds[0];
	close(pipe_fds[0]);
	/* every process set up and noted before the ready line names them (a loaded machine may
	 * take seconds to run a new child: a ready line with a pid of 0 would be a race) */
	for (int tries = 0; tries < 15000; tries++) {
		int all = 1;
		for (int i = 0; i < N; i++)
			if (i != P && atomic_load(&shared[i].count) == 0)
				all = 0;
		if (all)
			break;
		usleep(2000);
	}
	wl_ready("a=%d b=%d g=%d c=%d z1=%d z2=%d", shared[A].pid, shared[B].pid, shared[G].pid, shared[C].pid,
		 zombie_exit, zombie_signal);
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &old);
	for (;;) {
		sigsuspend(&old);
		tick(P);
		if (!wl_check_requested)
			continue;
		wl_check_requested = 0;
		char why[200] = "";
		if (check(why, sizeof(why)))
			wl_result("FAIL %s", why);
		else
			wl_result("PASS tree=%d", N);
	}
}
