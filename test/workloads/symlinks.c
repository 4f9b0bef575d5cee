/* O_PATH|O_NOFOLLOW fds of symlinks themselves (criu's zdtm symlink, symlink01): one
 * whose name stays, one unlinked after it was opened (a ghost symlink), one whose
 * target never existed (close-on-exec). On every SIGUSR1 each fd must still be a
 * symlink (fstatat AT_EMPTY_PATH) with the same target (readlinkat(fd, "")), the
 * same flags (O_PATH) and close-on-exec bit, and the unlinked one must have no links.
 */
#include "workload.h"

#include <sys/stat.h>

#ifndef O_PATH
#define O_PATH 010000000
#endif

struct link {
	const char *name, *target;
	int unlink_it, cloexec;
	int fd, flags;
};

static struct link links[] = {
	{ "kept", "/etc/passwd", 0, 0, -1, 0 },
	{ "gone", "target-of-an-unlinked-symlink", 1, 0, -1, 0 },
	{ "dangling", "/nonexistent/target", 0, 1, -1, 0 },
};

#define NLINKS (sizeof(links) / sizeof(links[0]))

static char failure[512];

static int fail(const struct link *l, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(failure, sizeof(failure), "%s: ", l->name);
	va_start(ap, fmt);
	vsnprintf(failure + n, sizeof(failure) - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static void setup(void)
{
	for (size_t i = 0; i < NLINKS; i++) {
		struct link *l = &links[i];
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", wl_dir, l->name);
		if (symlink(l->target, path) < 0)
			wl_die("symlink");
		l->fd = open(path, O_PATH | O_NOFOLLOW | (l->cloexec ? O_CLOEXEC : 0));
		if (l->fd < 0)
			wl_die("open O_PATH");
		l->flags = fcntl(l->fd, F_GETFL);
		if (l->flags < 0 || !(l->flags & O_PATH))
			wl_die("F_GETFL");
		if (l->unlink_it && unlink(path) < 0)
			wl_die("unlink");
	}
}

static int check_one(const struct link *l)
{
	struct stat st;
	char buf[4096];
	if (fstatat(l->fd, "", &st, AT_EMPTY_PATH) < 0)
		return fail(l, "fstatat: %s", strerror(errno));
	if (!S_ISLNK(st.st_mode))
		return fail(l, "mode 0%o is no symlink's", st.st_mode);
	if (l->unlink_it ? st.st_nlink != 0 : st.st_nlink != 1)
		return fail(l, "%ld links", (long)st.st_nlink);
	ssize_t n = readlinkat(l->fd, "", buf, sizeof(buf) - 1);
	if (n < 0)
		return fail(l, "readlinkat: %s", strerror(errno));
	buf[n] = 0;
	if (strcmp(buf, l->target) != 0)
		return fail(l, "target \"%s\", was \"%s\"", buf, l->target);
	int flags = fcntl(l->fd, F_GETFL), fdflags = fcntl(l->fd, F_GETFD);
	if (flags != l->flags)
		return fail(l, "flags 0%o, were 0%o", flags, l->flags);
	if (fdflags < 0 || !!(fdflags & FD_CLOEXEC) != l->cloexec)
		return fail(l, "fd flags %d", fdflags);
	/* an O_PATH fd has no position: lseek must still refuse it */
	if (lseek(l->fd, 0, SEEK_CUR) != -1 || errno != EBADF)
		return fail(l, "lseek does not fail with EBADF");
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	setup();
	wl_ready("fds=%d,%d,%d", links[0].fd, links[1].fd, links[2].fd);
	for (;;) {
		wl_wait_check();
		int bad = 0;
		for (size_t i = 0; i < NLINKS && !bad; i++)
			bad = check_one(&links[i]);
		if (bad)
			wl_result("FAIL symlinks: %s", failure);
		else
			wl_result("PASS symlinks");
	}
}
