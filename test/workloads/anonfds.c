/* Anonymous-inode files, one case per run (argv[2]); each sets its files up, then checks
 * them on every SIGUSR1 ("PASS <case>" or "FAIL <case>: why"). Every check can run any
 * number of times: what it consumes, it puts back.
 *
 *   eventfd          a count above 2^32 (0x200000005) and a semaphore eventfd holding 3,
 *                    read one at a time.
 *   signalfd         a signalfd for SIGUSR2 and SIGRTMIN+2, both blocked and pending (the
 *                    real-time one with a value): read through it, then queued again.
 *   timerfd-periodic a 50 ms periodic timer nobody reads between checks: the expirations
 *                    since the last check are readable, their total matches the time since
 *                    it was armed, and it keeps ticking.
 *   timerfd-oneshot  a 30 s one-shot timer with its time left, and a 1 ms one that expired
 *                    unread (one expiration readable).
 *   timerfd-abs      TFD_TIMER_ABSTIME timers on CLOCK_MONOTONIC and CLOCK_BOOTTIME, 30 s
 *                    after they were armed, every 7 s: the deadline and the flag stay.
 *   epoll            an epoll watching a pipe with data (level-triggered, 64-bit data), an
 *                    empty pipe, an eventfd (EPOLLET, an edge pending), a pipe with data
 *                    under EPOLLONESHOT that fired already, an eventfd with EPOLLEXCLUSIVE.
 *   epoll-nested     an epoll watching an epoll (with a ready pipe) at a higher fd number.
 *   epoll-moved      an epoll whose target (an eventfd) was dup'd to another number and
 *                    closed under the number it was added with.
 *   inotify          watches 2 and 3 (watch 1 removed): their descriptors and masks stay,
 *                    events after the restore come with them, a new watch gets 4 or more.
 *   fixture          fds 6..14 of criu 4.2's fds fixture (test/fixtures/src/fds.c): pipe,
 *                    eventfd 42, epoll, timerfd 1000 s/5 s, signalfd, inotify.
 *   fanotify         a fanotify group (non-blocking, not close-on-exec): an inode mark on directory fd1 for
 *                    its children's FAN_CLOSE_WRITE, an ignored mask on fd1/ignored, a
 *                    mount mark on the state directory's mount: a write to fd1/f and to
 *                    a file outside fd1 come as events, one to fd1/ignored does not.
 */
#include "workload.h"

#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>

#define MS 1000000LL

static char failure[512];

static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(failure, sizeof(failure), fmt, ap);
	va_end(ap);
	return -1;
}

static int64_t now_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t ts_ns(struct timespec ts)
{
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct timespec ns_ts(int64_t ns)
{
	struct timespec ts = { ns / 1000000000LL, ns % 1000000000LL };
	return ts;
}

static int readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

/* The fdinfo of one of our own fds, on one line ('|' for newlines: it goes into messages). */
static const char *fdinfo(int fd)
{
	static char buf[8192];
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	int f = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = f < 0 ? -1 : read(f, buf, sizeof(buf) - 1);
	if (f >= 0)
		close(f);
	buf[n > 0 ? n : 0] = 0;
	for (char *p = buf; *p; p++)
		if (*p == '\n')
			*p = '|';
	return buf;
}

/* The value after "key:" in our fdinfo of fd, or "" */
static const char *fdinfo_value(int fd, const char *key)
{
	static char val[256];
	const char *p = fdinfo(fd);
	size_t k = strlen(key);
	val[0] = 0;
	for (; p && *p; p = strchr(p, '|'), p = p ? p + 1 : NULL) {
		if (strncmp(p, key, k) == 0 && p[k] == ':') {
			p += k + 1;
			while (*p == ' ' || *p == '\t')
				p++;
			size_t n = strcspn(p, "|");
			if (n >= sizeof(val))
				n = sizeof(val) - 1;
			memcpy(val, p, n);
			val[n] = 0;
			break;
		}
	}
	return val;
}

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

static void dir_path(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", wl_dir, name);
}

static void put_file(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s/%s", wl_dir, dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
}

static void remove_file(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s/%s", wl_dir, dir, name);
	unlink(path);
}

/* ---- eventfd ---- */

#define BIG 0x200000005ULL
static int ev_big, ev_sema;

static void setup_eventfd(void)
{
	uint64_t v = BIG;
	ev_big = eventfd(0, EFD_NONBLOCK);
	ev_sema = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC);
	if (ev_big < 0 || ev_sema < 0 || write(ev_big, &v, 8) != 8)
		wl_die("eventfd");
}

static int check_eventfd(void)
{
	uint64_t v = 0, three = 3;
	if (read(ev_big, &v, 8) != 8 || v != BIG)
		return fail("the big eventfd reads %#" PRIx64 ", not %#llx", v, BIG);
	if (write(ev_big, &v, 8) != 8)
		return fail("write back: %s", strerror(errno));
	if (strcmp(fdinfo_value(ev_sema, "eventfd-semaphore"), "1") != 0)
		return fail("the semaphore eventfd's fdinfo says eventfd-semaphore: %s",
			    fdinfo_value(ev_sema, "eventfd-semaphore"));
	for (int i = 0; i < 3; i++)
		if (read(ev_sema, &v, 8) != 8 || v != 1)
			return fail("read %d of the semaphore eventfd gives %" PRIu64 " (%s)", i + 1, v,
				    strerror(errno));
	if (read(ev_sema, &v, 8) >= 0 || errno != EAGAIN)
		return fail("the semaphore eventfd gives a fourth read");
	if (write(ev_sema, &three, 8) != 8)
		return fail("write back: %s", strerror(errno));
	if (!(fcntl(ev_sema, F_GETFD) & FD_CLOEXEC) || (fcntl(ev_big, F_GETFD) & FD_CLOEXEC))
		return fail("close-on-exec flags changed");
	if (!(fcntl(ev_big, F_GETFL) & O_NONBLOCK))
		return fail("O_NONBLOCK lost");
	return 0;
}

/* ---- signalfd ---- */

static int sig_fd;

static void queue_signals(void)
{
	union sigval v = { .sival_int = 77 };
	kill(getpid(), SIGUSR2);
	sigqueue(getpid(), SIGRTMIN + 2, v);
}

static void setup_signalfd(void)
{
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR2);
	sigaddset(&m, SIGRTMIN + 2);
	sigprocmask(SIG_BLOCK, &m, NULL);
	sig_fd = signalfd(-1, &m, SFD_NONBLOCK);
	if (sig_fd < 0)
		wl_die("signalfd");
	queue_signals();
}

static int check_signalfd(void)
{
	struct signalfd_siginfo si;
	unsigned long long want = (1ULL << (SIGUSR2 - 1)) | (1ULL << (SIGRTMIN + 2 - 1)), mask = 0;
	sscanf(fdinfo_value(sig_fd, "sigmask"), "%llx", &mask);
	if (mask != want)
		return fail("sigmask %#llx, not %#llx", mask, want);
	if (!readable(sig_fd, 0))
		return fail("the signalfd is not readable");
	if (read(sig_fd, &si, sizeof(si)) != sizeof(si) || si.ssi_signo != SIGUSR2)
		return fail("first read: signal %u (%s)", si.ssi_signo, strerror(errno));
	if (read(sig_fd, &si, sizeof(si)) != sizeof(si) || si.ssi_signo != (unsigned)SIGRTMIN + 2 || si.ssi_int != 77)
		return fail("second read: signal %u value %d", si.ssi_signo, si.ssi_int);
	if (read(sig_fd, &si, sizeof(si)) >= 0)
		return fail("a third signal: %u", si.ssi_signo);
	queue_signals();
	return 0;
}

/* ---- timerfd-periodic ---- */

#define PERIOD (50 * MS)
static int tp_fd;
static int64_t tp_start;
static uint64_t tp_total;

static void setup_periodic(void)
{
	struct itimerspec its = { .it_interval = ns_ts(PERIOD), .it_value = ns_ts(PERIOD) };
	tp_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	tp_start = now_ns(CLOCK_MONOTONIC);
	if (tp_fd < 0 || timerfd_settime(tp_fd, 0, &its, NULL) < 0)
		wl_die("timerfd");
}

/* Expirations so far against the time since the timer was armed, on our clock. */
static int periodic_count(const char *when)
{
	int64_t expect = (now_ns(CLOCK_MONOTONIC) - tp_start) / PERIOD;
	if ((int64_t)tp_total < expect - 3 || (int64_t)tp_total > expect + 1)
		return fail("%s: %" PRIu64 " expirations read in all, %" PRId64 " periods since it was armed", when,
			    tp_total, expect);
	return 0;
}

static int check_periodic(void)
{
	uint64_t n = 0;
	if (read(tp_fd, &n, 8) != 8 && errno != EAGAIN)
		return fail("read: %s", strerror(errno));
	tp_total += n;
	if (periodic_count("at the check"))
		return -1;
	if (!readable(tp_fd, 1000))
		return fail("it stopped ticking: %s", fdinfo(tp_fd));
	if (read(tp_fd, &n, 8) != 8)
		return fail("read: %s", strerror(errno));
	tp_total += n;
	return periodic_count("one period on");
}

/* ---- timerfd-oneshot ---- */

static int to_long, to_short;
static int64_t to_deadline;

static void arm_short(void)
{
	struct itimerspec its = { .it_value = ns_ts(1 * MS) };
	if (timerfd_settime(to_short, 0, &its, NULL) < 0)
		wl_die("timerfd_settime");
	readable(to_short, 1000);
}

static void setup_oneshot(void)
{
	struct itimerspec its = { .it_value = ns_ts(30000 * MS) };
	to_long = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	to_short = timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK);
	to_deadline = now_ns(CLOCK_MONOTONIC) + 30000 * MS;
	if (to_long < 0 || to_short < 0 || timerfd_settime(to_long, 0, &its, NULL) < 0)
		wl_die("timerfd");
	arm_short();
}

static int check_oneshot(void)
{
	struct itimerspec its;
	uint64_t n = 0;
	timerfd_gettime(to_long, &its);
	int64_t left = ts_ns(its.it_value), want = to_deadline - now_ns(CLOCK_MONOTONIC);
	if (ts_ns(its.it_interval) != 0 || left <= 0 || llabs(left - want) > 250 * MS)
		return fail("the 30 s timer has %" PRId64 " ns left, its deadline is %" PRId64 " ns away", left, want);
	if (readable(to_long, 0))
		return fail("the 30 s timer expired");
	if (read(to_short, &n, 8) != 8 || n != 1)
		return fail("the expired timer reads %" PRIu64 " (%s)", n, strerror(errno));
	timerfd_gettime(to_short, &its);
	if (ts_ns(its.it_value) != 0)
		return fail("the expired timer is armed again");
	arm_short();
	return 0;
}

/* ---- timerfd-abs ---- */

static int ta_mono, ta_boot;
static int64_t ta_mono_at, ta_boot_at;

static int arm_abs(clockid_t clk, int64_t *at)
{
	int fd = timerfd_create(clk, TFD_NONBLOCK);
	*at = now_ns(clk) + 30000 * MS;
	struct itimerspec its = { .it_interval = ns_ts(7000 * MS), .it_value = ns_ts(*at) };
	if (fd < 0 || timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		wl_die("timerfd");
	return fd;
}

static void setup_abs(void)
{
	ta_mono = arm_abs(CLOCK_MONOTONIC, &ta_mono_at);
	ta_boot = arm_abs(CLOCK_BOOTTIME, &ta_boot_at);
}

static int check_abs_one(int fd, clockid_t clk, int64_t at, const char *name)
{
	struct itimerspec its;
	timerfd_gettime(fd, &its);
	int64_t left = ts_ns(its.it_value), want = at - now_ns(clk);
	if (llabs(left - want) > 250 * MS || ts_ns(its.it_interval) != 7000 * MS)
		return fail("%s: %" PRId64 " ns left, the deadline is %" PRId64 " ns away; interval %" PRId64, name,
			    left, want, ts_ns(its.it_interval));
	if (strcmp(fdinfo_value(fd, "settime flags"), "01") != 0)
		return fail("%s: settime flags %s", name, fdinfo_value(fd, "settime flags"));
	return 0;
}

static int check_abs(void)
{
	if (check_abs_one(ta_mono, CLOCK_MONOTONIC, ta_mono_at, "CLOCK_MONOTONIC"))
		return -1;
	return check_abs_one(ta_boot, CLOCK_BOOTTIME, ta_boot_at, "CLOCK_BOOTTIME");
}

/* ---- epoll ---- */

#define DATA_A 0xa1a2a3a4a5a6a7a8ULL
static int ep, ep_a[2], ep_b[2], ep_c[2], ep_e, ep_x;

static void ep_add(int epfd, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		wl_die("epoll_ctl");
}

/* The data of the events epoll_wait(0) reports, as a bit set: bit (data & 63). */
static uint64_t ready(int epfd, int *n)
{
	struct epoll_event evs[16];
	uint64_t set = 0;
	*n = epoll_wait(epfd, evs, 16, 0);
	for (int i = 0; i < *n; i++)
		set |= 1ULL << (evs[i].data.u64 & 63);
	return set;
}

/* Whether epfd's fdinfo lists target fd with these events and data. */
static int has_target(int epfd, int fd, uint32_t events, uint64_t data)
{
	char want[128];
	snprintf(want, sizeof(want), "tfd: %8d events: %8x data: %16llx ", fd, events, (unsigned long long)data);
	return strstr(fdinfo(epfd), want) != NULL;
}

static void setup_epoll(void)
{
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0 || pipe(ep_a) || pipe(ep_b) || pipe2(ep_c, O_NONBLOCK))
		wl_die("epoll/pipe");
	ep_e = eventfd(1, EFD_NONBLOCK);
	ep_x = eventfd(0, 0);
	if (write(ep_a[1], "a", 1) != 1 || write(ep_c[1], "c", 1) != 1)
		wl_die("write");
	ep_add(ep, ep_a[0], EPOLLIN, DATA_A);
	ep_add(ep, ep_b[0], EPOLLIN, 0xb);
	ep_add(ep, ep_e, EPOLLIN | EPOLLET, 0xe);
	ep_add(ep, ep_c[0], EPOLLIN | EPOLLONESHOT, 0xc);
	ep_add(ep, ep_x, EPOLLIN | EPOLLEXCLUSIVE, 0x7);
	struct epoll_event evs[8];
	epoll_wait(ep, evs, 8, 0); /* the oneshot fires; the edge of ep_e is taken */
	uint64_t one = 1;
	if (write(ep_e, &one, 8) != 8) /* a new edge, pending */
		wl_die("write");
}

static int check_epoll(void)
{
	int n;
	const uint32_t in = EPOLLIN | EPOLLERR | EPOLLHUP;
	if (!has_target(ep, ep_a[0], in, DATA_A) || !has_target(ep, ep_b[0], in, 0xb) ||
	    !has_target(ep, ep_e, in | EPOLLET, 0xe) || !has_target(ep, ep_c[0], EPOLLONESHOT, 0xc) ||
	    !has_target(ep, ep_x, in | EPOLLEXCLUSIVE, 0x7))
		return fail("targets: %s", fdinfo(ep));
	uint64_t got = ready(ep, &n), want = (1ULL << (DATA_A & 63)) | (1ULL << 0xe);
	if (got != want || n != 2)
		return fail("ready: %d events, set %#" PRIx64 ", want %#" PRIx64, n, got, want);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = 0xc };
	if (epoll_ctl(ep, EPOLL_CTL_MOD, ep_c[0], &ev) < 0)
		return fail("EPOLL_CTL_MOD: %s", strerror(errno));
	got = ready(ep, &n);
	want = (1ULL << (DATA_A & 63)) | (1ULL << 0xc);
	if (got != want || n != 2)
		return fail("ready after re-arming the oneshot: set %#" PRIx64 ", want %#" PRIx64, got, want);
	if (!(fcntl(ep, F_GETFD) & FD_CLOEXEC))
		return fail("the epoll lost close-on-exec");
	uint64_t one = 1;
	if (write(ep_e, &one, 8) != 8)
		return fail("write: %s", strerror(errno));
	return 0;
}

/* ---- epoll-nested ---- */

static int en_outer, en_inner, en_pipe[2], en_efd;

static void setup_nested(void)
{
	en_outer = epoll_create1(0);
	en_efd = eventfd(0, EFD_NONBLOCK);
	en_inner = epoll_create1(0);
	if (en_outer < 0 || en_inner < 0 || en_efd < 0 || pipe(en_pipe) || write(en_pipe[1], "p", 1) != 1)
		wl_die("setup");
	ep_add(en_inner, en_pipe[0], EPOLLIN, 0x1);
	ep_add(en_outer, en_inner, EPOLLIN, 0x2);
	ep_add(en_outer, en_efd, EPOLLIN, 0x3);
}

static int check_nested(void)
{
	int n;
	if (en_inner < en_outer)
		return fail("the inner epoll is fd %d, below the outer %d", en_inner, en_outer);
	uint64_t got = ready(en_outer, &n);
	if (got != 1ULL << 2 || n != 1)
		return fail("the outer epoll reports %#" PRIx64 "; fdinfo: %s", got, fdinfo(en_outer));
	got = ready(en_inner, &n);
	if (got != 1ULL << 1 || n != 1)
		return fail("the inner epoll reports %#" PRIx64, got);
	return 0;
}

/* ---- epoll-moved ---- */

static int em_ep, em_fd;

static void setup_moved(void)
{
	em_ep = epoll_create1(0);
	int e = eventfd(1, EFD_NONBLOCK);
	if (em_ep < 0 || e < 0)
		wl_die("setup");
	ep_add(em_ep, e, EPOLLIN, 0x5);
	em_fd = fcntl(e, F_DUPFD, 40);
	close(e);
}

static int check_moved(void)
{
	int n;
	uint64_t v;
	if (ready(em_ep, &n) != 1ULL << 5 || n != 1)
		return fail("the moved target is not reported ready");
	if (read(em_fd, &v, 8) != 8 || ready(em_ep, &n) != 0 || n != 0)
		return fail("the target is not the eventfd at fd %d", em_fd);
	v = 1;
	if (write(em_fd, &v, 8) != 8)
		return fail("write: %s", strerror(errno));
	return 0;
}

/* ---- inotify ---- */

static int in_fd;

static int in_event(int wd, uint32_t mask, const char *name, char **p, char *end)
{
	struct inotify_event *ev = (struct inotify_event *)*p;
	if (*p >= end)
		return fail("no event for watch %d (mask %#x)", wd, mask);
	*p += sizeof(*ev) + ev->len;
	if (ev->wd != wd || ev->mask != mask || strcmp(ev->name, name) != 0)
		return fail("event wd %d mask %#x name %s, want wd %d mask %#x name %s", ev->wd, ev->mask,
			    ev->len ? ev->name : "", wd, mask, name);
	return 0;
}

static void setup_inotify(void)
{
	char d[4096];
	static const char *dirs[] = { "d1", "d2", "d3", "d4" };
	for (int i = 0; i < 4; i++) {
		dir_path(d, sizeof(d), dirs[i]);
		mkdir(d, 0755);
	}
	in_fd = inotify_init1(IN_NONBLOCK);
	dir_path(d, sizeof(d), "d1");
	int w1 = inotify_add_watch(in_fd, d, IN_CREATE);
	dir_path(d, sizeof(d), "d2");
	int w2 = inotify_add_watch(in_fd, d, IN_DELETE);
	dir_path(d, sizeof(d), "d3");
	int w3 = inotify_add_watch(in_fd, d, IN_CREATE | IN_EXCL_UNLINK);
	if (in_fd < 0 || w1 != 1 || w2 != 2 || w3 != 3 || inotify_rm_watch(in_fd, w1) < 0)
		wl_die("inotify");
	char buf[4096];
	while (read(in_fd, buf, sizeof(buf)) > 0) /* IN_IGNORED of watch 1 */
		;
}

static int check_inotify(void)
{
	char buf[4096], d[4096];
	const char *info = fdinfo(in_fd);
	if (strstr(info, "inotify wd:1 ") || !strstr(info, "inotify wd:2 ") || !strstr(info, "inotify wd:3 "))
		return fail("watches: %s", info);
	if (!strstr(strstr(info, "inotify wd:2 "), " mask:200 ") ||
	    !strstr(strstr(info, "inotify wd:3 "), " mask:4000100 "))
		return fail("masks: %s", info);
	put_file("d3", "probe");
	put_file("d2", "probe");
	remove_file("d2", "probe");
	remove_file("d3", "probe");
	ssize_t r = read(in_fd, buf, sizeof(buf));
	if (r <= 0)
		return fail("no event (%s)", strerror(errno));
	char *p = buf, *end = buf + r;
	if (in_event(3, IN_CREATE, "probe", &p, end) || in_event(2, IN_DELETE, "probe", &p, end))
		return -1;
	if (p != end)
		return fail("more events than two");
	dir_path(d, sizeof(d), "d4");
	int w = inotify_add_watch(in_fd, d, IN_CREATE);
	if (w <= 3)
		return fail("a new watch gets descriptor %d", w);
	inotify_rm_watch(in_fd, w);
	while (read(in_fd, buf, sizeof(buf)) > 0) /* its IN_IGNORED */
		;
	return 0;
}

/* ---- fixture: fds 6..14 as criu 4.2's fds fixture has them ---- */

static int64_t fx_deadline;

static void setup_fixture(void)
{
	int p[2];
	sigset_t usr2;
	if (pipe(p))
		wl_die("pipe");
	pin(p[0], 6);
	pin(p[1], 7);
	if (write(7, "pipe data unread\n", 17) != 17)
		wl_die("write");
	pin(eventfd(0, EFD_NONBLOCK), 10);
	uint64_t v = 42;
	if (write(10, &v, 8) != 8)
		wl_die("eventfd write");
	pin(epoll_create1(0), 11);
	ep_add(11, 6, EPOLLIN, 6);
	ep_add(11, 10, EPOLLIN | EPOLLET, 10);
	pin(timerfd_create(CLOCK_MONOTONIC, 0), 12);
	struct itimerspec its = { .it_value = { 1000, 0 }, .it_interval = { 5, 0 } };
	fx_deadline = now_ns(CLOCK_MONOTONIC) + 1000000 * MS;
	if (timerfd_settime(12, 0, &its, NULL))
		wl_die("timerfd_settime");
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	sigprocmask(SIG_BLOCK, &usr2, NULL);
	pin(signalfd(-1, &usr2, 0), 13);
	kill(getpid(), SIGUSR2);
	char d[4096];
	dir_path(d, sizeof(d), "watched");
	mkdir(d, 0755);
	pin(inotify_init1(IN_NONBLOCK), 14);
	if (inotify_add_watch(14, d, IN_CREATE | IN_DELETE) < 0)
		wl_die("inotify_add_watch");
}

static int check_fixture(void)
{
	int n;
	struct itimerspec its;
	struct signalfd_siginfo si = { 0 };
	char buf[4096];
	if (strtoull(fdinfo_value(10, "eventfd-count"), NULL, 16) != 42)
		return fail("eventfd count %s", fdinfo_value(10, "eventfd-count"));
	if (ready(11, &n) != ((1ULL << 6) | (1ULL << 10)) || n != 2)
		return fail("epoll reports %d events", n);
	if (write(10, &(uint64_t){ 0 }, 8) != 8) /* an edge for the next check, the count unchanged */
		return fail("eventfd write: %s", strerror(errno));
	timerfd_gettime(12, &its);
	int64_t want = fx_deadline - now_ns(CLOCK_MONOTONIC);
	if (llabs(ts_ns(its.it_value) - want) > 250 * MS || its.it_interval.tv_sec != 5)
		return fail("timerfd value %ld s interval %ld s", (long)its.it_value.tv_sec,
			    (long)its.it_interval.tv_sec);
	if (!readable(13, 0) || read(13, &si, sizeof(si)) != sizeof(si) || si.ssi_signo != SIGUSR2)
		return fail("signalfd gives signal %u", si.ssi_signo);
	kill(getpid(), SIGUSR2);
	put_file("watched", "probe");
	remove_file("watched", "probe");
	ssize_t r = read(14, buf, sizeof(buf));
	char *p = buf, *end = buf + (r > 0 ? r : 0);
	if (in_event(1, IN_CREATE, "probe", &p, end) || in_event(1, IN_DELETE, "probe", &p, end))
		return -1;
	return 0;
}

/* ---- fanotify ---- */

static int fan_fd = -1;

static void setup_fanotify(void)
{
	char d[4096], ign[4096];
	dir_path(d, sizeof(d), "fd1");
	mkdir(d, 0755);
	dir_path(ign, sizeof(ign), "fd1/ignored");
	close(open(ign, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
	/* without FAN_CLOEXEC: the group's flags (fdinfo) must not gain the one tscriu's fd has */
	fan_fd = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE);
	if (fan_fd < 0)
		wl_die("fanotify_init");
	/* an inode mark on a directory for its children, an ignored mask on one of them, and
	 * a mount mark on the mount of the state directory */
	if (fanotify_mark(fan_fd, FAN_MARK_ADD, FAN_CLOSE_WRITE | FAN_EVENT_ON_CHILD, AT_FDCWD, d) < 0 ||
	    fanotify_mark(fan_fd, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_CLOSE_WRITE,
			  AT_FDCWD, ign) < 0 ||
	    fanotify_mark(fan_fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_CLOSE_WRITE, AT_FDCWD, wl_dir) < 0)
		wl_die("fanotify_mark");
}

/* Reads the group's events for up to 2 s: which of the names came (each event's fd
 * names its file), stopping once `want` of them did. */
static void fan_events(const char *const *names, int n, int *seen, int want, int ms)
{
	char buf[8192], link[64], got[4096];
	for (int waited = 0, found = 0; waited < ms && found < want;) {
		ssize_t len = read(fan_fd, buf, sizeof(buf));
		if (len <= 0) {
			usleep(10000);
			waited += 10;
			continue;
		}
		for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, len);
		     m = FAN_EVENT_NEXT(m, len)) {
			if (m->fd < 0)
				continue;
			snprintf(link, sizeof(link), "/proc/self/fd/%d", m->fd);
			ssize_t l = readlink(link, got, sizeof(got) - 1);
			close(m->fd);
			got[l > 0 ? l : 0] = 0;
			for (int i = 0; i < n; i++)
				if (strcmp(got, names[i]) == 0 && !seen[i]++)
					found++;
		}
	}
}

static int check_fanotify(void)
{
	char f[4096], ign[4096], out[4096];
	dir_path(f, sizeof(f), "fd1/f");
	dir_path(ign, sizeof(ign), "fd1/ignored");
	dir_path(out, sizeof(out), "outside");
	const char *names[] = { f, ign, out };
	int seen[3] = { 0, 0, 0 };
	fan_events(names, 3, seen, 99, 0); /* what came before */
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < 3; i++) {
		int fd = open(names[i], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0 || write(fd, "x", 1) != 1)
			return fail("write %s", names[i]);
		close(fd);
	}
	fan_events(names, 3, seen, 2, 2000);
	/* the ignored file's event would have come with the others (events are queued in order) */
	fan_events(names, 3, seen, 3, 100);
	if (!seen[0])
		return fail("no event for fd1/f (the directory's inode mark)");
	if (!seen[2])
		return fail("no event for outside (the mount mark)");
	if (seen[1])
		return fail("an event for fd1/ignored (its ignored mask)");
	int fl = fcntl(fan_fd, F_GETFL);
	if (!(fl & O_NONBLOCK))
		return fail("the group is blocking (flags %#x)", fl);
	return 0;
}

struct kase {
	const char *name;
	void (*setup)(void);
	int (*check)(void);
};

static const struct kase cases[] = {
	{ "eventfd", setup_eventfd, check_eventfd },
	{ "signalfd", setup_signalfd, check_signalfd },
	{ "timerfd-periodic", setup_periodic, check_periodic },
	{ "timerfd-oneshot", setup_oneshot, check_oneshot },
	{ "timerfd-abs", setup_abs, check_abs },
	{ "epoll", setup_epoll, check_epoll },
	{ "epoll-nested", setup_nested, check_nested },
	{ "epoll-moved", setup_moved, check_moved },
	{ "inotify", setup_inotify, check_inotify },
	{ "fixture", setup_fixture, check_fixture },
	{ "fanotify", setup_fanotify, check_fanotify },
};

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	const struct kase *k = NULL;
	for (size_t i = 0; argc > 2 && i < sizeof(cases) / sizeof(cases[0]); i++)
		if (strcmp(argv[2], cases[i].name) == 0)
			k = &cases[i];
	if (!k) {
		fprintf(stderr, "anonfds: which case? (eventfd signalfd timerfd-periodic timerfd-oneshot timerfd-abs "
				"epoll epoll-nested epoll-moved inotify fixture fanotify)\n");
		return 2;
	}
	wl_install_check_handler();
	k->setup();
	wl_ready("case=%s", k->name);
	for (;;) {
		/* Not pause(): a restored task re-enters the syscall it was dumped in, and a
		 * SIGUSR1 that comes before it does is handled with nothing left to wake it. */
		poll(NULL, 0, 50);
		if (!wl_check_requested)
			continue;
		wl_check_requested = 0;
		if (k->check())
			wl_result("FAIL %s: %s", k->name, failure);
		else
			wl_result("PASS %s", k->name);
	}
}
