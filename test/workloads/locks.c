/* File locks of the three kinds, held as a small database engine holds them (issue 8):
 *
 *   db      one file, open twice: POSIX (fcntl F_SETLK) locks through the first
 *           description -- a write lock on bytes 0-99, a read lock on 200-299, a write
 *           lock from 1000 to the end of the file -- and OFD locks through the second: a
 *           write lock on 500-599, a read lock on 700-799. The first description is dup'd
 *           too (its locks show on both fds).
 *   flock   an exclusive flock(2).
 *   shared  a shared flock(2).
 *
 * With "tree" as argv[2] a child is forked once the files are open: it takes a POSIX
 * write lock on 300-399 of db through the description it inherited (its own lock, on a
 * description its parent holds too) and sleeps; it dies with its parent.
 *
 * On SIGUSR1 the root forks a prober, a process of its own that opens every file again
 * and asks the kernel what would conflict (F_GETLK, F_OFD_GETLK, flock with LOCK_NB): each
 * lock must be there, of its type, over its range, held by its owner (the root, the child,
 * an OFD lock's -1), and the bytes between them free. "PASS locks" or "FAIL why". */
#include "workload.h"

#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static char db_path[4096], flock_path[4096], shared_path[4096];
static pid_t holder; /* the tree's child, or 0 */

/* What F_GETLK (or F_OFD_GETLK) says about a lock of `type` on [start, start+len). */
static int probe(int fd, int cmd, short type, off_t start, off_t len, struct flock *out)
{
	memset(out, 0, sizeof(*out));
	out->l_type = type;
	out->l_whence = SEEK_SET;
	out->l_start = start;
	out->l_len = len;
	return fcntl(fd, cmd, out);
}

/* One expectation: a probe of `type` on the range finds `want` (F_UNLCK: nothing) held by `pid`. */
static int expect(int fd, int cmd, short type, off_t start, off_t len, short want, pid_t pid, off_t wstart, off_t wlen)
{
	struct flock l;
	if (probe(fd, cmd, type, start, len, &l) < 0)
		return 100;
	if (l.l_type != want)
		return 101;
	if (want == F_UNLCK)
		return 0;
	if (l.l_pid != pid)
		return 102;
	if (l.l_start != wstart || l.l_len != wlen)
		return 103;
	return 0;
}

/* The prober's checks, numbered: the exit code names the first that failed. */
static int prober(pid_t root)
{
	int db = open(db_path, O_RDWR | O_CLOEXEC);
	int fl = open(flock_path, O_RDWR | O_CLOEXEC);
	int sh = open(shared_path, O_RDWR | O_CLOEXEC);
	int sh2 = open(shared_path, O_RDWR | O_CLOEXEC);
	if (db < 0 || fl < 0 || sh < 0 || sh2 < 0)
		return 1;
	const struct {
		int cmd;
		short type;
		off_t start, len;
		short want;
		pid_t pid;
		off_t wstart, wlen;
	} checks[] = {
		/* POSIX write 0-99 */
		{ F_GETLK, F_RDLCK, 0, 100, F_WRLCK, root, 0, 100 },
		{ F_GETLK, F_WRLCK, 50, 1, F_WRLCK, root, 0, 100 },
		/* free 100-199 */
		{ F_GETLK, F_WRLCK, 100, 100, F_UNLCK, 0, 0, 0 },
		/* POSIX read 200-299: others may read, not write */
		{ F_GETLK, F_RDLCK, 200, 100, F_UNLCK, 0, 0, 0 },
		{ F_GETLK, F_WRLCK, 250, 10, F_RDLCK, root, 200, 100 },
		/* the child's POSIX write 300-399 (tree only) */
		{ F_GETLK, F_WRLCK, 300, 100, holder ? F_WRLCK : F_UNLCK, holder, 300, 100 },
		/* OFD write 500-599: an OFD lock reports pid -1 */
		{ F_OFD_GETLK, F_RDLCK, 500, 100, F_WRLCK, -1, 500, 100 },
		{ F_GETLK, F_RDLCK, 599, 1, F_WRLCK, -1, 500, 100 },
		/* free 600-699 */
		{ F_OFD_GETLK, F_WRLCK, 600, 100, F_UNLCK, 0, 0, 0 },
		/* OFD read 700-799 */
		{ F_OFD_GETLK, F_RDLCK, 700, 100, F_UNLCK, 0, 0, 0 },
		{ F_OFD_GETLK, F_WRLCK, 700, 100, F_RDLCK, -1, 700, 100 },
		/* free 800-999 */
		{ F_GETLK, F_WRLCK, 800, 200, F_UNLCK, 0, 0, 0 },
		/* POSIX write from 1000 to the end */
		{ F_GETLK, F_RDLCK, 1 << 20, 1, F_WRLCK, root, 1000, 0 },
	};
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		int r = expect(db, checks[i].cmd, checks[i].type, checks[i].start, checks[i].len, checks[i].want,
			       checks[i].pid, checks[i].wstart, checks[i].wlen);
		if (r)
			return (int)(10 + i);
	}
	/* the exclusive flock: not even a shared one for another description */
	if (flock(fl, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK)
		return 40;
	/* the shared flock: another shared one, yes; an exclusive one, no */
	if (flock(sh, LOCK_SH | LOCK_NB) < 0)
		return 41;
	if (flock(sh2, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK)
		return 42;
	return 0;
}

static void check(void)
{
	pid_t root = getpid();
	pid_t p = fork();
	if (p < 0)
		wl_die("fork");
	if (p == 0)
		_exit(prober(root));
	int st;
	if (waitpid(p, &st, 0) < 0)
		wl_die("waitpid");
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		wl_result("PASS locks");
	else
		wl_result("FAIL locks: prober check %d (status %#x)", WIFEXITED(st) ? WEXITSTATUS(st) : -1, st);
}

static int open_file(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, 4096) < 0)
		wl_die(path);
	return fd;
}

static void lock(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock l = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	if (fcntl(fd, cmd, &l) < 0)
		wl_die("fcntl lock");
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	int tree = argc > 2 && strcmp(argv[2], "tree") == 0;
	snprintf(db_path, sizeof(db_path), "%s/db", wl_dir);
	snprintf(flock_path, sizeof(flock_path), "%s/flock", wl_dir);
	snprintf(shared_path, sizeof(shared_path), "%s/shared", wl_dir);
	int db = open_file(db_path);
	int ofd = open_file(db_path);
	int fl = open_file(flock_path);
	int sh = open_file(shared_path);
	if (dup(db) < 0)
		wl_die("dup");
	if (tree) {
		holder = fork();
		if (holder < 0)
			wl_die("fork");
		if (holder == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() == 1)
				_exit(0);
			lock(db, F_SETLK, F_WRLCK, 300, 100);
			for (;;)
				pause();
		}
		/* wait until the child holds its lock */
		for (;;) {
			struct flock l;
			if (probe(ofd, F_OFD_GETLK, F_WRLCK, 300, 100, &l) < 0)
				wl_die("F_OFD_GETLK");
			if (l.l_type != F_UNLCK)
				break;
			usleep(1000);
		}
	}
	lock(db, F_SETLK, F_WRLCK, 0, 100);
	lock(db, F_SETLK, F_RDLCK, 200, 100);
	lock(db, F_SETLK, F_WRLCK, 1000, 0);
	lock(ofd, F_OFD_SETLK, F_WRLCK, 500, 100);
	lock(ofd, F_OFD_SETLK, F_RDLCK, 700, 100);
	if (flock(fl, LOCK_EX) < 0 || flock(sh, LOCK_SH) < 0)
		wl_die("flock");
	wl_install_check_handler();
	if (holder)
		wl_ready("holder=%d", (int)holder);
	else
		wl_ready("");
	for (;;) {
		wl_wait_check();
		check();
	}
}
