/* A task holding /proc directories of processes that are gone (zdtm's unhashed_proc and
 * remap_dead_pid): two children A and B are forked, the task chdir()s into /proc/A, opens
 * /proc/A again as fd 20 and /proc/B/status as fd 21, then both children are killed and
 * reaped. The kernel unhashes a dead process's /proc directory: the cwd and fd 20 read
 * "/proc/A (deleted)", fd 21 keeps its name but has no task behind it.
 * Self-check (SIGUSR1): getcwd fails with ENOENT, the cwd and fd 20 are one procfs
 * directory named "/proc/A (deleted)" in which a lookup fails with ESRCH, fd 21 is
 * "/proc/B/status" and its read fails with ESRCH, /proc/A and /proc/B do not exist, and
 * no SIGCHLD came once the children were reaped ("PASS unhashedproc").
 * The ready line gives a=A b=B. */
#include "workload.h"
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>

#define PROC_SUPER_MAGIC 0x9fa0

static pid_t a, b;
/* SIGCHLDs since the children were reaped: none, a restore's helpers end unseen */
static volatile sig_atomic_t chld;

static void on_chld(int sig)
{
	(void)sig;
	chld++;
}

/* fd `fd` (AT_FDCWD: the cwd) is a directory on procfs whose link reads `want`. A path
 * lookup through a dead process's directory fails (procfs revalidates it: ESRCH); stat of
 * the file itself does not. */
static int dead_dir(int fd, const char *link_path, const char *want, struct stat *st)
{
	char link[256];
	struct statfs sfs;
	ssize_t n = readlink(link_path, link, sizeof(link) - 1);
	if (n < 0)
		return wl_fail("readlink %s: %s", link_path, strerror(errno));
	link[n] = 0;
	if (strcmp(link, want) != 0)
		return wl_fail("%s is \"%s\", not \"%s\"", link_path, link, want);
	if (statfs(link_path, &sfs) < 0 || fstatat(fd, "", st, AT_EMPTY_PATH) < 0)
		return wl_fail("stat of %s: %s", link_path, strerror(errno));
	if (!S_ISDIR(st->st_mode) || sfs.f_type != PROC_SUPER_MAGIC)
		return wl_fail("%s is no procfs directory (mode 0%o, fs 0x%lx)", link_path, st->st_mode,
			       (long)sfs.f_type);
	if (openat(fd, ".", O_PATH) >= 0 || errno != ESRCH)
		return wl_fail("a lookup in %s gives %s, not ESRCH", link_path, strerror(errno));
	return 0;
}

static int check(void)
{
	char buf[4096], want[64], path[64];
	struct stat cwd, fd20;
	if (getcwd(buf, sizeof(buf)) || errno != ENOENT)
		return wl_fail("getcwd gives %s", getcwd(buf, sizeof(buf)) ? buf : strerror(errno));
	snprintf(want, sizeof(want), "/proc/%d (deleted)", a);
	if (dead_dir(AT_FDCWD, "/proc/self/cwd", want, &cwd) || dead_dir(20, "/proc/self/fd/20", want, &fd20))
		return -1;
	if (cwd.st_ino != fd20.st_ino || cwd.st_dev != fd20.st_dev)
		return wl_fail("the cwd and fd 20 are not the same directory");
	snprintf(want, sizeof(want), "/proc/%d/status", b);
	ssize_t n = readlink("/proc/self/fd/21", buf, sizeof(buf) - 1);
	buf[n < 0 ? 0 : n] = 0;
	if (strcmp(buf, want) != 0)
		return wl_fail("fd 21 is \"%s\", not \"%s\"", buf, want);
	if (pread(21, buf, sizeof(buf), 0) >= 0 || errno != ESRCH)
		return wl_fail("a read of fd 21 (%s) gives %s, not ESRCH", want, strerror(errno));
	if (chld)
		return wl_fail("%d SIGCHLD since the children were reaped", (int)chld);
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "/proc/%d", i ? b : a);
		if (access(path, F_OK) == 0 || errno != ENOENT)
			return wl_fail("%s is there", path);
	}
	return 0;
}

static pid_t child(void)
{
	pid_t pid = fork();
	if (pid < 0)
		wl_die("fork");
	if (pid == 0) {
		for (;;)
			pause();
	}
	return pid;
}

int main(int argc, char **argv)
{
	char path[64];
	wl_init(argc, argv);
	a = child();
	b = child();
	snprintf(path, sizeof(path), "/proc/%d", a);
	if (chdir(path) < 0)
		wl_die("chdir /proc/A");
	wl_fd_at(20, open(path, O_RDONLY | O_DIRECTORY), "open /proc/A");
	snprintf(path, sizeof(path), "/proc/%d/status", b);
	wl_fd_at(21, open(path, O_RDONLY), "open /proc/B/status");
	kill(a, SIGKILL);
	kill(b, SIGKILL);
	if (waitpid(a, NULL, 0) != a || waitpid(b, NULL, 0) != b)
		wl_die("waitpid");
	if (signal(SIGCHLD, on_chld) == SIG_ERR)
		wl_die("signal");
	wl_install_check_handler();
	wl_ready("a=%d b=%d", a, b);
	wl_serve_checks("unhashedproc", check);
}
