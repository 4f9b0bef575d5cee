/* Watches whose file handles do not open: procfs encodes handles for fdinfo but decodes none,
 * so a dump finds the path of /proc/sys/kernel/ostype only by walking directories
 * (--force-irmap, --irmap-scan-path /proc/sys/kernel). Cases:
 *   inotify   an inotify watch (IN_OPEN) on it
 *   fanotify  a fanotify inode mark (FAN_OPEN) on it
 * Self-check (SIGUSR1): with the events queued so far drained, an open of the file by the
 * task is reported by the watch ("PASS CASE"). */
#include "workload.h"

#include <sys/fanotify.h>
#include <sys/inotify.h>

#define WATCHED "/proc/sys/kernel/ostype"

static int group, wd;

static int open_watched(void)
{
	int fd = open(WATCHED, O_RDONLY);
	if (fd < 0)
		return wl_fail("open %s: %s", WATCHED, strerror(errno));
	close(fd);
	return 0;
}

static void setup_inotify(void)
{
	group = inotify_init1(IN_NONBLOCK);
	if (group < 0)
		wl_die("inotify_init1");
	wd = inotify_add_watch(group, WATCHED, IN_OPEN);
	if (wd < 0)
		wl_die("inotify_add_watch");
}

static int check_inotify(void)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	while (read(group, buf, sizeof(buf)) > 0)
		; /* opens by anyone since the last check */
	if (open_watched())
		return -1;
	ssize_t n = read(group, buf, sizeof(buf));
	if (n < (ssize_t)sizeof(struct inotify_event))
		return wl_fail("no event for an open of %s (%s)", WATCHED, n < 0 ? strerror(errno) : "short read");
	const struct inotify_event *e = (const struct inotify_event *)buf;
	if (e->wd != wd || !(e->mask & IN_OPEN))
		return wl_fail("event on wd %d mask 0x%x, not IN_OPEN on wd %d", e->wd, e->mask, wd);
	return 0;
}

static void setup_fanotify(void)
{
	group = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY);
	if (group < 0)
		wl_die("fanotify_init");
	if (fanotify_mark(group, FAN_MARK_ADD, FAN_OPEN, AT_FDCWD, WATCHED) < 0)
		wl_die("fanotify_mark");
}

/* The events queued on the group (their fds closed): whether one is an open by this task. */
static int fanotify_opened(void)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct fanotify_event_metadata))));
	int mine = 0;
	ssize_t n;
	while ((n = read(group, buf, sizeof(buf))) > 0) {
		struct fanotify_event_metadata *m = (struct fanotify_event_metadata *)buf;
		for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
			if (m->fd >= 0)
				close(m->fd);
			if ((m->mask & FAN_OPEN) && m->pid == getpid())
				mine = 1;
		}
	}
	return mine;
}

static int check_fanotify(void)
{
	fanotify_opened();
	if (open_watched())
		return -1;
	if (!fanotify_opened())
		return wl_fail("no FAN_OPEN by this task for an open of %s", WATCHED);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct wl_case cases[] = {
		{ "inotify", setup_inotify, check_inotify },
		{ "fanotify", setup_fanotify, check_fanotify },
	};
	return wl_run_case(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
