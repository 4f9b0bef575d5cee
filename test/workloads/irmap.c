/* An inotify watch whose file handle does not open: IN_OPEN on /proc/sys/kernel/ostype
 * (procfs encodes handles for fdinfo but decodes none), so a dump finds its path only by
 * walking directories (--force-irmap, --irmap-scan-path /proc/sys/kernel).
 * Self-check (SIGUSR1): the instance has no event queued but this open's, and an open of
 * the file is reported on the watch's descriptor ("PASS irmap"). */
#include "workload.h"

#include <sys/inotify.h>

#define WATCHED "/proc/sys/kernel/ostype"

static int ino_fd, wd;

static int check(void)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	while (read(ino_fd, buf, sizeof(buf)) > 0)
		; /* opens by anyone since the last check */
	int fd = open(WATCHED, O_RDONLY);
	if (fd < 0)
		return wl_fail("open %s: %s", WATCHED, strerror(errno));
	close(fd);
	ssize_t n = read(ino_fd, buf, sizeof(buf));
	if (n < (ssize_t)sizeof(struct inotify_event))
		return wl_fail("no event for an open of %s (%s)", WATCHED, n < 0 ? strerror(errno) : "short read");
	const struct inotify_event *e = (const struct inotify_event *)buf;
	if (e->wd != wd || !(e->mask & IN_OPEN))
		return wl_fail("event on wd %d mask 0x%x, not IN_OPEN on wd %d", e->wd, e->mask, wd);
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	ino_fd = inotify_init1(IN_NONBLOCK);
	if (ino_fd < 0)
		wl_die("inotify_init1");
	wd = inotify_add_watch(ino_fd, WATCHED, IN_OPEN);
	if (wd < 0)
		wl_die("inotify_add_watch");
	wl_install_check_handler();
	wl_ready("wd=%d", wd);
	wl_serve_checks("irmap", check);
}
