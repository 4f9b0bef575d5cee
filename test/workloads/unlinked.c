/* Files and memory that live on after their names are gone, one case per run
 * (argv[2]); each sets up its state in the state directory, then checks it on
 * every SIGUSR1 ("PASS <case>" or "FAIL <case>: why"). Every check can run any
 * number of times: what it writes, it writes with the values it expects.
 *
 *   memfd-priv   a memfd with an fd at a set offset, a MAP_PRIVATE mapping of it
 *                (one page copied-on-write, the others still the memfd's) and a
 *                MAP_SHARED one: the private mapping sees later writes to the pages
 *                it did not write, the shared one is shared with the fd.
 *   shmem-priv   the same on shared anonymous memory, opened through
 *                /proc/self/map_files (the kernel's "/dev/zero (deleted)").
 *   mmap         an unlinked file mapped three times, privately at two offsets
 *                (one page copied-on-write) and once through a second name (also
 *                unlinked), shared once, and open in an fd: one inode after restore.
 *   holes        unlinked sparse files: holes at the head, middle and tail of a
 *                7-page file, a 2-page file with a hole, and a 64 MiB file with
 *                two pages of data (beyond a 1 MiB ghost limit in size, not in data).
 *   attrs        unlinked files whose mode (o+x, set-user-ID), owner, times and
 *                offset must come back, one with a name full of quotes, a newline
 *                and a backslash in a directory of mode 0500, one made O_TMPFILE.
 *   dirs         a removed current directory and a removed directory open in an fd.
 *   fifo         an unlinked FIFO with bytes queued in it.
 *   devices      unlinked device nodes of /dev/null and /dev/zero, open.
 */
#include "workload.h"

#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define PAGE 4096L

static char failure[512];

static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(failure, sizeof(failure), fmt, ap);
	va_end(ap);
	return -1;
}

static void path_of(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", wl_dir, name);
}

static int put_int(int fd, int v, off_t off)
{
	return pwrite(fd, &v, sizeof(v), off) == sizeof(v) ? 0 : -1;
}

static int get_int(int fd, off_t off)
{
	int v = -1;
	if (pread(fd, &v, sizeof(v), off) != sizeof(v))
		return -1;
	return v;
}

/* ---- memfd-priv, shmem-priv ---- */

static int shm_fd;
static char *shm_priv, *shm_shared;
static off_t shm_pos = 3 * PAGE + 5;

static void setup_shm(int memfd)
{
	if (memfd) {
		shm_fd = memfd_create("wl-memfd", 0);
		if (shm_fd < 0 || ftruncate(shm_fd, 5 * PAGE) < 0)
			wl_die("memfd");
	} else {
		char *anon = mmap(NULL, 5 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (anon == MAP_FAILED)
			wl_die("mmap shared");
		char path[128];
		snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (long)anon, (long)anon + 5 * PAGE);
		shm_fd = open(path, O_RDWR);
		if (shm_fd < 0)
			wl_die("open map_files");
		/* the object lives on through the fd and the mappings below */
		munmap(anon, 5 * PAGE);
	}
	if (put_int(shm_fd, 1, 0) || put_int(shm_fd, 11, PAGE) || put_int(shm_fd, 111, 2 * PAGE))
		wl_die("pwrite");
	shm_priv = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, shm_fd, PAGE);
	shm_shared = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 2 * PAGE);
	if (shm_priv == MAP_FAILED || shm_shared == MAP_FAILED)
		wl_die("mmap");
	*(int *)(shm_priv + PAGE) = 22; /* copied on write: the object keeps 111 */
	if (lseek(shm_fd, shm_pos, SEEK_SET) < 0)
		wl_die("lseek");
}

static int check_shm(void)
{
	if (*(int *)(shm_priv + PAGE) != 22)
		return fail("the private mapping's written page holds %d", *(int *)(shm_priv + PAGE));
	if (*(int *)shm_priv != 11)
		return fail("the private mapping's first page holds %d, the object's 11", *(int *)shm_priv);
	if (get_int(shm_fd, 2 * PAGE) != 111 && get_int(shm_fd, 2 * PAGE) != 333)
		return fail("the object's third page holds %d", get_int(shm_fd, 2 * PAGE));
	*(int *)shm_shared = 333;
	if (get_int(shm_fd, 2 * PAGE) != 333)
		return fail("a write to the shared mapping does not reach the fd");
	if (put_int(shm_fd, 444, 3 * PAGE))
		return fail("pwrite: %s", strerror(errno));
	if (*(int *)(shm_priv + 2 * PAGE) != 444)
		return fail("the private mapping's unwritten page does not see the object (holds %d)",
			    *(int *)(shm_priv + 2 * PAGE));
	if (*(int *)(shm_shared + PAGE) != 444)
		return fail("the shared mapping does not see a write through the fd");
	if (lseek(shm_fd, 0, SEEK_CUR) != shm_pos)
		return fail("the fd's offset is %ld, was %ld", (long)lseek(shm_fd, 0, SEEK_CUR), (long)shm_pos);
	struct stat st;
	if (fstat(shm_fd, &st) < 0 || st.st_size != 5 * PAGE)
		return fail("the object's size is %ld", (long)st.st_size);
	return 0;
}

/* ---- mmap ---- */

static int mm_fd;
static char *mm_a, *mm_b, *mm_c, *mm_s;

static void setup_mmap(void)
{
	char name[4096], link_name[4200];
	path_of(name, sizeof(name), "mapped");
	snprintf(link_name, sizeof(link_name), "%s.lnk", name);
	mm_fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (mm_fd < 0)
		wl_die("open");
	if (pwrite(mm_fd, "a", 1, 0) != 1 || pwrite(mm_fd, "b", 1, PAGE) != 1 ||
	    pwrite(mm_fd, "c", 1, 2 * PAGE - 1) != 1)
		wl_die("pwrite");
	mm_a = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, mm_fd, 0);
	mm_b = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, mm_fd, PAGE);
	mm_s = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mm_fd, 0);
	if (link(name, link_name) < 0)
		wl_die("link");
	int lfd = open(link_name, O_RDONLY);
	if (lfd < 0)
		wl_die("open link");
	mm_c = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, lfd, 0);
	close(lfd);
	if (mm_a == MAP_FAILED || mm_b == MAP_FAILED || mm_c == MAP_FAILED || mm_s == MAP_FAILED)
		wl_die("mmap");
	if (unlink(name) < 0 || unlink(link_name) < 0)
		wl_die("unlink");
	mm_b[1] = 'B'; /* copied on write */
}

static int check_mmap(void)
{
	if (mm_a[0] != 'a')
		return fail("1st region holds '%c'", mm_a[0]);
	if (mm_b[0] != 'b' || mm_b[PAGE - 1] != 'c' || mm_b[1] != 'B')
		return fail("2nd region holds '%c' '%c' '%c'", mm_b[0], mm_b[1], mm_b[PAGE - 1]);
	if (mm_c[0] != 'a')
		return fail("the region mapped through the second name holds '%c'", mm_c[0]);
	if (pwrite(mm_fd, "z", 1, 10) != 1)
		return fail("pwrite: %s", strerror(errno));
	if (mm_a[10] != 'z' || mm_c[10] != 'z' || mm_s[10] != 'z')
		return fail("a write through the fd does not show in every mapping (%d %d %d)", mm_a[10], mm_c[10],
			    mm_s[10]);
	mm_s[20] = 's';
	char c = 0;
	if (pread(mm_fd, &c, 1, 20) != 1 || c != 's')
		return fail("a write to the shared mapping does not reach the fd");
	struct stat st;
	if (fstat(mm_fd, &st) < 0 || st.st_nlink != 0 || st.st_size != 2 * PAGE)
		return fail("the file has %ld links and %ld bytes", (long)st.st_nlink, (long)st.st_size);
	return 0;
}

/* ---- holes ---- */

static int h_small, h_mid, h_big;
#define BIG (64L << 20)

static void fill_page(char *buf, int seed)
{
	for (long i = 0; i < PAGE; i++)
		buf[i] = (char)(seed * 31 + i * 7);
}

static int data_page(int fd, off_t off, int seed)
{
	char want[PAGE], got[PAGE];
	fill_page(want, seed);
	return pread(fd, got, PAGE, off) == PAGE && memcmp(want, got, PAGE) == 0;
}

static int sparse_file(const char *name, off_t size, const off_t *data, int n)
{
	char path[4096], buf[PAGE];
	path_of(path, sizeof(path), name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || unlink(path) < 0)
		wl_die("open sparse");
	for (int i = 0; i < n; i++) {
		fill_page(buf, i + 1);
		if (pwrite(fd, buf, PAGE, data[i]) != PAGE)
			wl_die("pwrite sparse");
	}
	if (ftruncate(fd, size) < 0)
		wl_die("ftruncate");
	return fd;
}

static const off_t mid_data[] = { PAGE, 3 * PAGE, 4 * PAGE };
static const off_t small_data[] = { 0 };
static const off_t big_data[] = { 0, 32L << 20 };

static void setup_holes(void)
{
	h_mid = sparse_file("holes-mid", 7 * PAGE, mid_data, 3);
	h_small = sparse_file("holes-small", 2 * PAGE + 100, small_data, 1);
	h_big = sparse_file("holes-big", BIG, big_data, 2);
}

static int holes_hold(int fd, const char *name, off_t size, const off_t *data, int n)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size != size)
		return fail("%s: size %ld, was %ld", name, (long)st.st_size, (long)size);
	for (int i = 0; i < n; i++)
		if (!data_page(fd, data[i], i + 1))
			return fail("%s: the data at %ld differs", name, (long)data[i]);
	/* the holes are holes: the first data and the first hole after each piece */
	off_t at = 0;
	for (int i = 0; i < n; i++) {
		off_t d = lseek(fd, at, SEEK_DATA);
		if (d != data[i])
			return fail("%s: data found at %ld, expected at %ld", name, (long)d, (long)data[i]);
		off_t end = data[i] + PAGE;
		while (i + 1 < n && data[i + 1] == end) {
			i++;
			end += PAGE;
		}
		off_t h = lseek(fd, d, SEEK_HOLE);
		if (h != (end < size ? end : size))
			return fail("%s: a hole at %ld, expected at %ld", name, (long)h, (long)end);
		at = end;
	}
	if (at < size && lseek(fd, at, SEEK_DATA) >= 0)
		return fail("%s: data after %ld, where the tail hole was", name, (long)at);
	return 0;
}

static int check_holes(void)
{
	if (holes_hold(h_mid, "holes-mid", 7 * PAGE, mid_data, 3) || holes_hold(h_big, "holes-big", BIG, big_data, 2))
		return -1;
	/* a file under 3 pages is stored whole: its data and size only */
	struct stat st;
	char zero[PAGE] = { 0 }, got[PAGE];
	if (fstat(h_small, &st) < 0 || st.st_size != 2 * PAGE + 100 || !data_page(h_small, 0, 1))
		return fail("holes-small: size %ld or data differs", (long)st.st_size);
	if (pread(h_small, got, PAGE, PAGE) != PAGE || memcmp(got, zero, PAGE) != 0)
		return fail("holes-small: its hole does not read as zeros");
	return 0;
}

/* ---- attrs ---- */

static int a_plain, a_suid, a_odd, a_tmp;
static struct stat a_before[4];
static const off_t a_pos[4] = { 123, 0, 7, 999 };

static int made_unlinked(const char *path, int flags, mode_t mode)
{
	int fd = open(path, flags | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		wl_die(path);
	char buf[1000];
	for (int i = 0; i < 1000; i++)
		buf[i] = (char)(i * 13);
	if (write(fd, buf, sizeof(buf)) != sizeof(buf) || fchmod(fd, mode) < 0)
		wl_die("write/fchmod");
	return fd;
}

static void setup_attrs(void)
{
	char path[8192], sub[4096];
	path_of(path, sizeof(path), "attr-plain");
	a_plain = made_unlinked(path, O_RDWR, 0645);
	if (fchown(a_plain, 1234, 2345) < 0)
		wl_die("fchown");
	unlink(path);
	path_of(path, sizeof(path), "attr-suid");
	a_suid = made_unlinked(path, O_RDWR, 0644);
	if (fchown(a_suid, 1234, 2345) < 0 || fchmod(a_suid, 06755) < 0)
		wl_die("fchown/fchmod suid");
	struct timespec times[2] = { { .tv_sec = 1000000000, .tv_nsec = 0 }, { .tv_sec = 1234567890, .tv_nsec = 0 } };
	if (futimens(a_suid, times) < 0)
		wl_die("futimens");
	unlink(path);
	path_of(sub, sizeof(sub), "ro-dir");
	if (mkdir(sub, 0700) < 0)
		wl_die("mkdir");
	snprintf(path, sizeof(path), "%s/test\\file'\n\"un%%linkfstat00", sub);
	a_odd = made_unlinked(path, O_WRONLY, 0600);
	if (chmod(sub, 0500) < 0)
		wl_die("chmod dir");
	unlink(path);
	a_tmp = open(wl_dir, O_RDWR | O_TMPFILE, 0640);
	if (a_tmp < 0)
		wl_die("O_TMPFILE");
	if (write(a_tmp, "tmpfile data", 12) != 12)
		wl_die("write tmpfile");
	int fds[4] = { a_plain, a_suid, a_odd, a_tmp };
	for (int i = 0; i < 4; i++)
		if (lseek(fds[i], a_pos[i], SEEK_SET) < 0 || fstat(fds[i], &a_before[i]) < 0)
			wl_die("lseek/fstat");
}

static int check_attrs(void)
{
	static const char *names[4] = { "plain", "set-user-ID", "odd name", "O_TMPFILE" };
	int fds[4] = { a_plain, a_suid, a_odd, a_tmp };
	for (int i = 0; i < 4; i++) {
		struct stat st;
		if (fstat(fds[i], &st) < 0)
			return fail("%s: fstat: %s", names[i], strerror(errno));
		if (st.st_mode != a_before[i].st_mode)
			return fail("%s: mode 0%o, was 0%o", names[i], st.st_mode, a_before[i].st_mode);
		if (st.st_uid != a_before[i].st_uid || st.st_gid != a_before[i].st_gid)
			return fail("%s: owner %d:%d, was %d:%d", names[i], st.st_uid, st.st_gid, a_before[i].st_uid,
				    a_before[i].st_gid);
		if (st.st_size != a_before[i].st_size || st.st_nlink != 0)
			return fail("%s: %ld bytes and %ld links", names[i], (long)st.st_size, (long)st.st_nlink);
		if (st.st_mtim.tv_sec != a_before[i].st_mtim.tv_sec)
			return fail("%s: mtime %ld, was %ld", names[i], (long)st.st_mtim.tv_sec,
				    (long)a_before[i].st_mtim.tv_sec);
		if (lseek(fds[i], 0, SEEK_CUR) != a_pos[i])
			return fail("%s: offset %ld, was %ld", names[i], (long)lseek(fds[i], 0, SEEK_CUR),
				    (long)a_pos[i]);
	}
	char buf[12];
	if (pread(a_tmp, buf, 12, 0) != 12 || memcmp(buf, "tmpfile data", 12) != 0)
		return fail("the O_TMPFILE file's data differs");
	if (pread(a_plain, buf, 1, 999) != 1 || buf[0] != (char)(999 * 13))
		return fail("the plain file's data differs");
	if (fcntl(a_odd, F_GETFL) < 0 || (fcntl(a_odd, F_GETFL) & O_ACCMODE) != O_WRONLY)
		return fail("the odd-named file is not write-only");
	return 0;
}

/* ---- dirs ---- */

static int d_fd;

static void setup_dirs(void)
{
	char cwd[4096], open_dir[4096];
	path_of(cwd, sizeof(cwd), "cwd-gone");
	path_of(open_dir, sizeof(open_dir), "open-gone");
	if (mkdir(cwd, 0751) < 0 || mkdir(open_dir, 0705) < 0)
		wl_die("mkdir");
	d_fd = open(open_dir, O_RDONLY | O_DIRECTORY);
	if (d_fd < 0 || chdir(cwd) < 0 || rmdir(cwd) < 0 || rmdir(open_dir) < 0)
		wl_die("open/chdir/rmdir");
}

static int removed_dir(int fd, const char *what, mode_t mode)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return fail("%s: fstat: %s", what, strerror(errno));
	if (!S_ISDIR(st.st_mode) || (st.st_mode & 07777) != mode || st.st_nlink != 0)
		return fail("%s: mode 0%o, %ld links", what, st.st_mode, (long)st.st_nlink);
	/* nothing can be made in a removed directory */
	if (mkdirat(fd, "x", 0700) == 0 || errno != ENOENT)
		return fail("%s: mkdirat did not fail with ENOENT", what);
	return 0;
}

static int check_dirs(void)
{
	char link[4096];
	ssize_t n = readlink("/proc/self/cwd", link, sizeof(link) - 1);
	if (n < 0)
		return fail("readlink cwd: %s", strerror(errno));
	link[n] = 0;
	if (n < 10 || strcmp(link + n - 10, " (deleted)") != 0)
		return fail("the cwd is %s", link);
	int cwd = open(".", O_RDONLY | O_DIRECTORY);
	int r = removed_dir(cwd, "cwd", 0751);
	close(cwd);
	return r ? r : removed_dir(d_fd, "the open directory", 0705);
}

/* ---- fifo ---- */

static int f_fd;

static void setup_fifo(void)
{
	char path[4096];
	path_of(path, sizeof(path), "fifo");
	if (mkfifo(path, 0640) < 0)
		wl_die("mkfifo");
	f_fd = open(path, O_RDWR | O_NONBLOCK);
	if (f_fd < 0 || write(f_fd, "queued", 6) != 6 || unlink(path) < 0)
		wl_die("fifo");
}

static int check_fifo(void)
{
	struct stat st;
	char buf[16];
	if (fstat(f_fd, &st) < 0 || !S_ISFIFO(st.st_mode) || (st.st_mode & 07777) != 0640 || st.st_nlink != 0)
		return fail("fstat: mode 0%o, %ld links", st.st_mode, (long)st.st_nlink);
	ssize_t n = read(f_fd, buf, sizeof(buf));
	if (n != 6 || memcmp(buf, "queued", 6) != 0)
		return fail("read %zd bytes from the FIFO", n);
	if (write(f_fd, "queued", 6) != 6)
		return fail("write: %s", strerror(errno));
	return 0;
}

/* ---- devices ---- */

static int dev_null, dev_zero;

static void setup_devices(void)
{
	char path[4096], path2[4096];
	path_of(path, sizeof(path), "null");
	path_of(path2, sizeof(path2), "zero");
	if (mknod(path, S_IFCHR | 0600, makedev(1, 3)) < 0 || mknod(path2, S_IFCHR | 0600, makedev(1, 5)) < 0 ||
	    chmod(path, 0620) < 0 || chmod(path2, 0604) < 0)
		wl_die("mknod");
	dev_null = open(path, O_WRONLY);
	dev_zero = open(path2, O_RDONLY);
	if (dev_null < 0 || dev_zero < 0 || unlink(path) < 0 || unlink(path2) < 0)
		wl_die("open/unlink device");
}

static int check_devices(void)
{
	struct stat a, b;
	if (fstat(dev_null, &a) < 0 || fstat(dev_zero, &b) < 0)
		return fail("fstat: %s", strerror(errno));
	if (!S_ISCHR(a.st_mode) || a.st_rdev != makedev(1, 3) || (a.st_mode & 07777) != 0620 || a.st_nlink != 0)
		return fail("null: mode 0%o rdev %lx links %ld", a.st_mode, (long)a.st_rdev, (long)a.st_nlink);
	if (!S_ISCHR(b.st_mode) || b.st_rdev != makedev(1, 5) || (b.st_mode & 07777) != 0604 || b.st_nlink != 0)
		return fail("zero: mode 0%o rdev %lx links %ld", b.st_mode, (long)b.st_rdev, (long)b.st_nlink);
	char buf[8] = "xxxxxxx";
	if (write(dev_null, buf, 8) != 8 || read(dev_zero, buf, 8) != 8 || buf[0] || buf[7])
		return fail("the devices do not behave as /dev/null and /dev/zero");
	return 0;
}

struct kase {
	const char *name;
	void (*setup)(void);
	int (*check)(void);
};

static void setup_memfd(void)
{
	setup_shm(1);
}

static void setup_shmem(void)
{
	setup_shm(0);
}

static const struct kase cases[] = {
	{ "memfd-priv", setup_memfd, check_shm }, { "shmem-priv", setup_shmem, check_shm },
	{ "mmap", setup_mmap, check_mmap },	  { "holes", setup_holes, check_holes },
	{ "attrs", setup_attrs, check_attrs },	  { "dirs", setup_dirs, check_dirs },
	{ "fifo", setup_fifo, check_fifo },	  { "devices", setup_devices, check_devices },
};

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	const struct kase *k = NULL;
	for (size_t i = 0; argc > 2 && i < sizeof(cases) / sizeof(cases[0]); i++)
		if (strcmp(argv[2], cases[i].name) == 0)
			k = &cases[i];
	if (!k) {
		fprintf(stderr, "unlinked: which case? (memfd-priv shmem-priv mmap holes attrs dirs fifo devices)\n");
		return 2;
	}
	wl_install_check_handler();
	k->setup();
	wl_ready("case=%s", k->name);
	/* SIGUSR1 stays blocked except inside sigsuspend: with pause() a request that
	 * came before the task got back into it (a restored task not yet scheduled)
	 * was lost. */
	sigset_t usr1, none;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigemptyset(&none);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	for (;;) {
		while (!wl_check_requested)
			sigsuspend(&none);
		wl_check_requested = 0;
		if (k->check())
			wl_result("FAIL %s: %s", k->name, failure);
		else
			wl_result("PASS %s", k->name);
	}
}
