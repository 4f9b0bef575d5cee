/* Many fds of mixed kinds, for the fd benchmark (scripts/bench-fds.ts): argv[2] = N, the
 * number of fds to hold beyond stdin/stdout/stderr, in groups of ten:
 *
 *   two regular files (each its own open of one of 16 files, at its own offset), a pipe
 *   (both ends, 3 bytes queued), a unix socketpair (both ends, 5 bytes queued one way),
 *   an eventfd (count = the group number), a timerfd (armed, 1000 s), a dup of the
 *   group's first file, an epoll watching the group's eventfd;
 *
 * and one more epoll watching every group's eventfd (N/10 targets).
 *
 * RLIMIT_NOFILE is raised to what N needs. On SIGUSR1 it checks every group: offsets,
 * queued bytes, counts, the timer armed, the epoll reporting its eventfd ("PASS fds=N")
 * -- without consuming anything. The ready line names the number of fds open. */
#include "workload.h"

#include <dirent.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#define GROUP 10

static int groups;
static int all_ep; /* the epoll of every eventfd */
static int *first; /* each group's first fd */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n - 3; /* . .. and the dir's own fd */
}

static int check_group(int g, char *why, size_t len)
{
	int f = first[g];
	/* f: file, f+1: file, f+2/3: pipe, f+4/5: socketpair, f+6: eventfd, f+7: timerfd, f+8: dup, f+9: epoll */
	if (lseek(f, 0, SEEK_CUR) != g % 97 || lseek(f + 8, 0, SEEK_CUR) != g % 97)
		return snprintf(why, len, "group %d: the file's offset", g), -1;
	int n = 0;
	if (ioctl(f + 2, FIONREAD, &n) < 0 || n != 3)
		return snprintf(why, len, "group %d: %d bytes in the pipe", g, n), -1;
	if (ioctl(f + 5, FIONREAD, &n) < 0 || n != 5)
		return snprintf(why, len, "group %d: %d bytes queued on the socket", g, n), -1;
	struct epoll_event ev;
	if (epoll_wait(f + 9, &ev, 1, 0) != 1 || ev.data.u32 != (unsigned)g)
		return snprintf(why, len, "group %d: the epoll does not report its eventfd", g), -1;
	struct itimerspec its;
	if (timerfd_gettime(f + 7, &its) < 0 || its.it_value.tv_sec < 900)
		return snprintf(why, len, "group %d: the timer is not armed", g), -1;
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", f + 6);
	int fi = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got = fi < 0 ? -1 : read(fi, buf, sizeof(buf) - 1);
	if (fi >= 0)
		close(fi);
	buf[got > 0 ? got : 0] = 0;
	char *c = strstr(buf, "eventfd-count:");
	if (!c || strtoull(c + 14, NULL, 16) != (unsigned long long)g + 1)
		return snprintf(why, len, "group %d: the eventfd's count", g), -1;
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	int n = argc > 2 ? atoi(argv[2]) : 1000;
	groups = n / GROUP;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		wl_die("getrlimit");
	if (rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = (rlim_t)n + 64;
		if (rl.rlim_max < rl.rlim_cur)
			rl.rlim_max = rl.rlim_cur;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			wl_die("setrlimit");
	}
	first = calloc((size_t)groups + 1, sizeof(int));
	for (int g = 0; g < groups; g++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/file%d", wl_dir, g % 16);
		int f = open(path, O_RDWR | O_CREAT, 0644);
		int f2 = open(path, O_RDONLY);
		if (f < 0 || f2 != f + 1 || lseek(f, g % 97, SEEK_SET) < 0)
			wl_die("open");
		first[g] = f;
		int p[2], s[2];
		if (pipe(p) < 0 || write(p[1], "abc", 3) != 3)
			wl_die("pipe");
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) < 0 || write(s[0], "hello", 5) != 5)
			wl_die("socketpair");
		int e = eventfd((unsigned)g + 1, 0);
		int t = timerfd_create(CLOCK_MONOTONIC, 0);
		struct itimerspec its = { .it_value = { .tv_sec = 1000 } };
		if (e < 0 || t < 0 || timerfd_settime(t, 0, &its, NULL) < 0)
			wl_die("eventfd/timerfd");
		int d = dup(f);
		int ep = epoll_create1(0);
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (unsigned)g };
		if (d < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev) < 0)
			wl_die("dup/epoll");
		if (ep != f + GROUP - 1)
			wl_die("the group's fds are not consecutive");
	}
	all_ep = epoll_create1(0);
	if (all_ep < 0)
		wl_die("epoll_create1");
	for (int g = 0; g < groups; g++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (unsigned)g };
		if (epoll_ctl(all_ep, EPOLL_CTL_ADD, first[g] + 6, &ev) < 0)
			wl_die("epoll_ctl");
	}
	wl_install_check_handler();
	wl_ready("fds=%d", count_fds());
	for (;;) {
		wl_wait_check();
		char why[256] = "";
		int ok = 1;
		for (int g = 0; g < groups && ok; g++)
			ok = check_group(g, why, sizeof(why)) == 0;
		struct epoll_event *evs = calloc((size_t)groups + 1, sizeof(*evs));
		int n_ready = epoll_wait(all_ep, evs, groups + 1, 0);
		free(evs);
		if (ok && n_ready != groups) {
			ok = 0;
			snprintf(why, sizeof(why), "the epoll of every eventfd reports %d of %d", n_ready, groups);
		}
		if (ok)
			wl_result("PASS fds=%d", count_fds());
		else
			wl_result("FAIL %s", why);
	}
}
