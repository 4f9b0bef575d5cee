/* A task holding files of its own /proc directory that name its other fds (as zdtm's
 * fanotify00 holds /proc/self/fdinfo/N of its fanotify fd): 20 DIR/data O_RDWR at offset
 * 1234, 22 DIR/data O_RDONLY at offset 77; 21 its /proc/self/fdinfo/20 (above the fd it
 * names) and 7 its /proc/self/fdinfo/22 (below it); 8 its /proc/self/status.
 * Self-check (SIGUSR1): each fdinfo file names the task's pid and reads the offset of
 * its fd, status reads the task's pid ("PASS procself"). */
#include "workload.h"

/* fd `fd` is the task's /proc/PID/`name` and reads a line `line`. */
static int proc_file(int fd, const char *name, const char *line)
{
	char want[64], link[256], buf[4096], self[32];
	snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(self, link, sizeof(link) - 1);
	link[n < 0 ? 0 : n] = 0;
	snprintf(want, sizeof(want), "/proc/%d/%s", (int)getpid(), name);
	if (strcmp(link, want) != 0)
		return wl_fail("fd %d is %s, not %s", fd, link, want);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n < 0)
		return wl_fail("fd %d (%s): pread: %s", fd, link, strerror(errno));
	buf[n] = 0;
	if (!strstr(buf, line))
		return wl_fail("fd %d (%s) has no line \"%s\"", fd, link, line);
	return 0;
}

static int check(void)
{
	char pid[64];
	snprintf(pid, sizeof(pid), "Pid:\t%d\n", (int)getpid());
	return proc_file(21, "fdinfo/20", "pos:\t1234\n") || proc_file(7, "fdinfo/22", "pos:\t77\n") ||
	       proc_file(8, "status", pid);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	char data[4096];
	snprintf(data, sizeof(data), "%s/data", wl_dir);
	int fd = open(data, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, 4096) < 0)
		wl_die("make data");
	wl_fd_at(20, fd, "open data");
	wl_fd_at(22, open(data, O_RDONLY), "open data");
	if (lseek(20, 1234, SEEK_SET) != 1234 || lseek(22, 77, SEEK_SET) != 77)
		wl_die("lseek");
	wl_fd_at(21, open("/proc/self/fdinfo/20", O_RDONLY), "open /proc/self/fdinfo/20");
	wl_fd_at(7, open("/proc/self/fdinfo/22", O_RDONLY), "open /proc/self/fdinfo/22");
	wl_fd_at(8, open("/proc/self/status", O_RDONLY), "open /proc/self/status");
	wl_install_check_handler();
	wl_ready("");
	wl_serve_checks("procself", check);
}
