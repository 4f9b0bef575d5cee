/* The fd kinds a dump saves, pinned to fixed numbers: 10 rw.dat O_RDWR at offset 37,
 * 11 append.log O_WRONLY|O_APPEND, 12 /dev/zero O_CLOEXEC, 13/14 a pipe holding
 * "pipe data unread\n", 15/16 a FIFO holding "fifo data unread\n" (read end
 * O_NONBLOCK), 17 a dup of 10 (same open file), 18 ghost.dat unlinked while open,
 * 19 rw.dat and 20 the workload's dir opened O_PATH.
 * Self-check (SIGUSR1): offsets, flags and unread data are as set up ("PASS"). */
#include "workload.h"

#include <sys/stat.h>
#include <time.h>

static void pin(int fd, int want)
{
	if (fd < 0)
		wl_die("open");
	if (fd != want) {
		if (dup2(fd, want) < 0)
			wl_die("dup2");
		close(fd);
	}
}

static char path_buf[4096];
static const char *path(const char *name)
{
	snprintf(path_buf, sizeof(path_buf), "%s/%s", wl_dir, name);
	return path_buf;
}

/* fd is the file name opened relative to the directory dirfd (both O_PATH fds). */
static int same_file(int fd, int dirfd, const char *name)
{
	struct stat a, b;
	return fstat(fd, &a) == 0 && fstatat(dirfd, name, &b, 0) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	char data[100];
	for (int i = 0; i < 100; i++)
		data[i] = (char)('a' + i % 26);
	int fd = open(path("rw.dat"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (write(fd, data, 100) != 100)
		wl_die("write rw");
	lseek(fd, 37, SEEK_SET);
	pin(fd, 10);
	fd = open(path("append.log"), O_WRONLY | O_CREAT | O_APPEND | O_TRUNC, 0644);
	if (write(fd, "appended line\n", 14) != 14)
		wl_die("write append");
	pin(fd, 11);
	pin(open("/dev/zero", O_RDONLY), 12);
	if (fcntl(12, F_SETFD, FD_CLOEXEC) < 0)
		wl_die("FD_CLOEXEC");
	int p[2];
	if (pipe(p) < 0)
		wl_die("pipe");
	pin(p[0], 13);
	pin(p[1], 14);
	if (write(14, "pipe data unread\n", 17) != 17)
		wl_die("write pipe");
	if (mkfifo(path("fifo"), 0644) < 0)
		wl_die("mkfifo");
	pin(open(path("fifo"), O_RDONLY | O_NONBLOCK), 15);
	pin(open(path("fifo"), O_WRONLY), 16);
	if (write(16, "fifo data unread\n", 17) != 17)
		wl_die("write fifo");
	if (dup2(10, 17) < 0)
		wl_die("dup2 17");
	fd = open(path("ghost.dat"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (write(fd, "this file was unlinked while open\n", 34) != 34)
		wl_die("write ghost");
	pin(fd, 18);
	if (unlink(path("ghost.dat")) < 0)
		wl_die("unlink ghost");
	pin(open(path("rw.dat"), O_PATH), 19);
	pin(open(wl_dir, O_PATH | O_DIRECTORY), 20);
	wl_install_check_handler();
	wl_write_counter(0);
	wl_ready("rw=10 append=11 zero=12 pipe=13,14 fifo=15,16 dup=17 ghost=18 opath=19,20");
	unsigned long long n = 0;
	for (;;) {
		wl_write_counter(++n);
		if (wl_check_requested) {
			wl_check_requested = 0;
			const char *bad = NULL;
			char buf[64];
			if (lseek(10, 0, SEEK_CUR) != 37)
				bad = "rw offset";
			else if (!(fcntl(11, F_GETFL) & O_APPEND))
				bad = "append flag";
			else if (!(fcntl(12, F_GETFD) & FD_CLOEXEC))
				bad = "cloexec";
			else if (!(fcntl(15, F_GETFL) & O_NONBLOCK))
				bad = "fifo nonblock";
			else if (pread(18, buf, 34, 0) != 34 || memcmp(buf, "this file was", 13) != 0)
				bad = "ghost data";
			else if (!(fcntl(19, F_GETFL) & O_PATH) || !(fcntl(20, F_GETFL) & O_PATH))
				bad = "O_PATH flag";
			else if (!same_file(19, 20, "rw.dat"))
				bad = "O_PATH file or directory";
			if (!bad) {
				/* read the queued data, then put it back for the next check */
				fcntl(13, F_SETFL, O_NONBLOCK);
				if (read(13, buf, sizeof(buf)) != 17 || memcmp(buf, "pipe data unread\n", 17) != 0)
					bad = "pipe data";
				else if (write(14, "pipe data unread\n", 17) != 17)
					bad = "pipe refill";
				fcntl(13, F_SETFL, 0);
			}
			if (!bad) {
				if (read(15, buf, sizeof(buf)) != 17 || memcmp(buf, "fifo data unread\n", 17) != 0)
					bad = "fifo data";
				else if (write(16, "fifo data unread\n", 17) != 17)
					bad = "fifo refill";
			}
			if (bad)
				wl_result("FAIL %s", bad);
			else
				wl_result("PASS count=%llu", n);
		}
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
	}
}
