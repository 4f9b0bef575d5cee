/* Files whose name was removed while other hard links keep them (criu's --link-remap),
 * one case per run (argv[2]); the other names live in DIR/keep. Each check can run any
 * number of times ("PASS <case>" or "FAIL <case>: why" on SIGUSR1).
 *
 *   files    DIR/a, open O_RDWR at offset 5 in two fds (one a dup), opened once more
 *            O_RDONLY (another open file description) and mapped MAP_SHARED, its name
 *            removed (keep/a stays); DIR/sub/b open O_RDONLY, its name and its
 *            directory removed (keep/b stays). After a restore every fd and the mapping
 *            are on the same inodes as keep/a and keep/b, which have no other link left.
 *   inotify  an inotify instance watching DIR (wd 1), an unlinked file with no other
 *            link held open (wd 2: a ghost) and DIR/l, unlinked with keep/l left and
 *            held open (wd 3: linked back, its handle names it "l (deleted)"): writes
 *            to each file reach their watch.
 *   outside  an inotify watch on DIR/o, unlinked with no other link and held open only by
 *            a process outside the workload's tree (a grandchild given to the subreaper,
 *            which lives as long as the workload): no dump of the tree can make o again.
 */
#include "workload.h"

#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PAGE 4096L

static char path_buf[4096];
static const char *path(const char *name)
{
	snprintf(path_buf, sizeof(path_buf), "%s/%s", wl_dir, name);
	return path_buf;
}

/* The file `name` made with `data`, linked as keep/`keep` too, then its own name removed;
 * an fd of it (flags), and another open of it (O_RDONLY) in *ro when ro is not NULL. */
static int linked_file(const char *name, const char *keep, const char *data, int flags, int *ro)
{
	char own[4096], other[4096];
	snprintf(own, sizeof(own), "%s/%s", wl_dir, name);
	snprintf(other, sizeof(other), "%s/keep/%s", wl_dir, keep);
	int fd = open(own, O_RDWR | O_CREAT | O_EXCL, 0640);
	if (fd < 0 || write(fd, data, strlen(data)) != (ssize_t)strlen(data) || ftruncate(fd, 2 * PAGE) < 0)
		wl_die("make a file");
	close(fd);
	fd = open(own, flags);
	if (ro && (*ro = open(own, O_RDONLY)) < 0)
		wl_die("open again");
	if (fd < 0 || link(own, other) < 0 || unlink(own) < 0)
		wl_die("open, link, unlink");
	return fd;
}

/* fd is on the inode keep/`keep` names, which has `nlink` links. */
static int same_as_kept(int fd, const char *keep, nlink_t nlink, const char *what)
{
	struct stat a, b;
	char other[4096];
	snprintf(other, sizeof(other), "%s/keep/%s", wl_dir, keep);
	if (fstat(fd, &a) < 0 || stat(other, &b) < 0)
		return wl_fail("%s: stat: %s", what, strerror(errno));
	if (a.st_ino != b.st_ino || a.st_dev != b.st_dev)
		return wl_fail("%s is inode %lu, keep/%s is %lu", what, (unsigned long)a.st_ino, keep,
			       (unsigned long)b.st_ino);
	if (b.st_nlink != nlink)
		return wl_fail("keep/%s has %lu links, not %lu", keep, (unsigned long)b.st_nlink, (unsigned long)nlink);
	return 0;
}

/* ---- files ---- */

static int fa, fa_dup, fa_ro, fb;
static char *map_a;

static void setup_files(void)
{
	if (mkdir(path("keep"), 0755) < 0 || mkdir(path("sub"), 0755) < 0)
		wl_die("mkdir");
	fa = linked_file("a", "a", "hello, link remap", O_RDWR, &fa_ro);
	fb = linked_file("sub/b", "b", "bee", O_RDONLY, NULL);
	if (rmdir(path("sub")) < 0)
		wl_die("rmdir sub");
	fa_dup = dup(fa);
	map_a = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
	if (fa_dup < 0 || fa_ro < 0 || map_a == MAP_FAILED || lseek(fa, 5, SEEK_SET) != 5)
		wl_die("dup, open, mmap, lseek");
}

static int check_files(void)
{
	if (same_as_kept(fa, "a", 1, "fd a") || same_as_kept(fa_dup, "a", 1, "the dup of fd a") ||
	    same_as_kept(fa_ro, "a", 1, "fd a (read-only)") || same_as_kept(fb, "b", 1, "fd b"))
		return -1;
	if (lseek(fa_dup, 0, SEEK_CUR) != 5)
		return wl_fail("the dup of fd a is at %ld, not 5 (its offset is shared)",
			       (long)lseek(fa_dup, 0, SEEK_CUR));
	char buf[32] = { 0 };
	if (pread(fb, buf, 3, 0) != 3 || memcmp(buf, "bee", 3) != 0)
		return wl_fail("b holds \"%.3s\"", buf);
	if (memcmp(map_a, "hello, link remap", 17) != 0)
		return wl_fail("the mapping of a holds \"%.17s\"", map_a);
	/* a write through each way in shows through the others */
	map_a[PAGE] = 'm';
	if (pwrite(fa, "f", 1, PAGE + 1) != 1)
		return wl_fail("pwrite: %s", strerror(errno));
	char kept[4096];
	snprintf(kept, sizeof(kept), "%s/keep/a", wl_dir);
	int k = open(kept, O_RDONLY);
	if (k < 0 || pread(k, buf, 2, PAGE) != 2 || buf[0] != 'm' || buf[1] != 'f')
		return wl_fail("keep/a does not see the writes to the mapping and the fd (\"%.2s\")", buf);
	close(k);
	if (pread(fa_ro, buf, 2, PAGE) != 2 || buf[0] != 'm' || buf[1] != 'f')
		return wl_fail("the read-only fd does not see the writes");
	return 0;
}

/* ---- inotify ---- */

static int ino_fd, ghost_fd, linked_fd, wd_dir, wd_ghost, wd_linked;

static void setup_inotify(void)
{
	if (mkdir(path("keep"), 0755) < 0)
		wl_die("mkdir");
	ino_fd = inotify_init1(IN_NONBLOCK);
	if (ino_fd < 0)
		wl_die("inotify_init1");
	ghost_fd = open(path("g"), O_RDWR | O_CREAT | O_EXCL, 0600);
	if (ghost_fd < 0)
		wl_die("open g");
	/* keep/l made first, then l linked to it: the kernel's first name of the inode is l,
	 * which a file handle opens as "l (deleted)" once removed. */
	int k = open(path("keep/l"), O_RDWR | O_CREAT | O_EXCL, 0640);
	char kept[4096];
	snprintf(kept, sizeof(kept), "%s/keep/l", wl_dir);
	if (k < 0 || write(k, "el", 2) != 2 || link(kept, path("l")) < 0)
		wl_die("make l");
	close(k);
	linked_fd = open(path("l"), O_RDWR);
	if (linked_fd < 0)
		wl_die("open l");
	wd_dir = inotify_add_watch(ino_fd, wl_dir, IN_CREATE | IN_DELETE);
	wd_ghost = inotify_add_watch(ino_fd, path("g"), IN_MODIFY);
	wd_linked = inotify_add_watch(ino_fd, path("l"), IN_MODIFY);
	if (wd_dir != 1 || wd_ghost != 2 || wd_linked != 3)
		wl_die("inotify_add_watch");
	if (unlink(path("g")) < 0 || unlink(path("l")) < 0)
		wl_die("unlink g, l");
}

/* Drains the queue; returns the events of watch `wd` it held (their masks or'ed). */
static unsigned drain(int wd)
{
	char buf[4096] __attribute__((aligned(8)));
	unsigned got = 0;
	ssize_t n;
	while ((n = read(ino_fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)p;
			if (e->wd == wd)
				got |= e->mask;
			p += sizeof(*e) + e->len;
		}
	}
	return got;
}

static int check_inotify(void)
{
	struct stat st;
	if (fstat(ghost_fd, &st) < 0 || st.st_nlink != 0)
		return wl_fail("g has %lu links", (unsigned long)st.st_nlink);
	if (same_as_kept(linked_fd, "l", 1, "fd l"))
		return -1;
	drain(0);
	if (pwrite(ghost_fd, "g", 1, 0) != 1)
		return wl_fail("pwrite g: %s", strerror(errno));
	if (!(drain(wd_ghost) & IN_MODIFY))
		return wl_fail("no IN_MODIFY on watch %d for a write to the unlinked g", wd_ghost);
	if (pwrite(linked_fd, "l", 1, 0) != 1)
		return wl_fail("pwrite l: %s", strerror(errno));
	if (!(drain(wd_linked) & IN_MODIFY))
		return wl_fail("no IN_MODIFY on watch %d for a write to l", wd_linked);
	char kept[4096];
	snprintf(kept, sizeof(kept), "%s/keep/l", wl_dir);
	int k = open(kept, O_WRONLY);
	if (k < 0 || pwrite(k, "k", 1, 1) != 1)
		return wl_fail("write through keep/l: %s", strerror(errno));
	close(k);
	if (!(drain(wd_linked) & IN_MODIFY))
		return wl_fail("no IN_MODIFY on watch %d for a write through keep/l", wd_linked);
	int made = open(path("new"), O_RDWR | O_CREAT | O_EXCL, 0600);
	if (made < 0 || close(made) < 0 || unlink(path("new")) < 0)
		return wl_fail("create and unlink new: %s", strerror(errno));
	if ((drain(wd_dir) & (IN_CREATE | IN_DELETE)) != (IN_CREATE | IN_DELETE))
		return wl_fail("watch %d on the directory missed the creation or removal of a file", wd_dir);
	return 0;
}

/* ---- outside ---- */

static int out_ify;

static void setup_outside(void)
{
	int hold[2], opened[2];
	char c = 0;
	out_ify = inotify_init1(IN_NONBLOCK);
	int fd = open(path("o"), O_RDWR | O_CREAT | O_EXCL, 0600);
	if (out_ify < 0 || fd < 0 || inotify_add_watch(out_ify, path("o"), IN_MODIFY) != 1 || pipe(hold) < 0 ||
	    pipe(opened) < 0)
		wl_die("inotify, open o, pipes");
	pid_t child = fork();
	if (child < 0)
		wl_die("fork");
	if (child == 0) {
		/* a grandchild, given to the subreaper: outside the tree a dump of this one takes */
		if (fork() == 0) {
			close(hold[1]);
			if (write(opened[1], "o", 1) != 1)
				_exit(1);
			/* holds o (its fd from the workload) until the workload is gone */
			while (read(hold[0], &c, 1) > 0)
				;
			_exit(0);
		}
		_exit(0);
	}
	waitpid(child, NULL, 0);
	if (read(opened[0], &c, 1) != 1 || unlink(path("o")) < 0)
		wl_die("wait for the holder, unlink o");
	close(fd);
	close(opened[0]);
	close(opened[1]);
	close(hold[0]);
}

static int check_outside(void)
{
	char info[64], buf[4096];
	snprintf(info, sizeof(info), "/proc/self/fdinfo/%d", out_ify);
	int fd = open(info, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = 0;
	if (!strstr(buf, "inotify wd:1 "))
		return wl_fail("the watch on the unlinked o is gone: %s", buf);
	return 0;
}

static const struct wl_case cases[] = {
	{ "files", setup_files, check_files },
	{ "inotify", setup_inotify, check_inotify },
	{ "outside", setup_outside, check_outside },
};

int main(int argc, char **argv)
{
	return wl_run_case(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
