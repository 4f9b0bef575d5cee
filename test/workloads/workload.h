/* Shared by the test workloads: each takes its state directory as argv[1],
 * prints one "ready <pid> key=value ..." line to stdout once set up, and
 * appends one line per self-check ("PASS ..." or "FAIL <reason>") to
 * DIR/result when asked with SIGUSR1. Header-only so that every workload stays
 * a single gcc invocation. */
#ifndef TSCRIU_WORKLOAD_H
#define TSCRIU_WORKLOAD_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static const char *wl_dir;
static volatile sig_atomic_t wl_check_requested;

/* The self-pipe of wl_wait_check: the handler writes a byte for every request. */
static int wl_wake[2] = { -1, -1 };

static inline void wl_on_usr1(int sig)
{
	(void)sig;
	int saved = errno;
	wl_check_requested = 1;
	if (wl_wake[1] >= 0 && write(wl_wake[1], "c", 1) < 0) {
		/* full: requests are waiting already */
	}
	errno = saved;
}

static inline void wl_die(const char *what)
{
	fprintf(stderr, "workload: %s: %s\n", what, strerror(errno));
	exit(1);
}

static inline void wl_init(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s STATE_DIR\n", argv[0]);
		exit(2);
	}
	wl_dir = argv[1];
}

/* SIGUSR1 asks for a self-check; SA_RESTART is deliberately off so that a
 * blocking syscall returns EINTR and the loop notices. */
static inline void wl_install_check_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = wl_on_usr1;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		wl_die("sigaction");
}

/* Waits for the next check request (SIGUSR1) in read() of a self-pipe the handler writes
 * to (made at the first wait, so that workloads that never wait have no extra fd): a
 * request that comes while the previous check still runs, or just before the wait, is
 * seen (the flag, or a byte waiting in the pipe), never lost as with pause(). The signal
 * mask is never touched, and read() restarts as itself (unlike poll's restart_syscall),
 * so the registers look the same at every stop: tests compare both around a dump. */
static inline void wl_wait_check(void)
{
	if (wl_wake[0] < 0 && (pipe2(wl_wake, O_CLOEXEC) < 0 || fcntl(wl_wake[1], F_SETFL, O_NONBLOCK) < 0))
		wl_die("pipe2");
	for (;;) {
		if (wl_check_requested) {
			char drain[64];
			int queued = 0;
			wl_check_requested = 0;
			if (ioctl(wl_wake[0], FIONREAD, &queued) == 0 && queued > 0 &&
			    read(wl_wake[0], drain, (size_t)(queued < 64 ? queued : 64)) < 0)
				wl_die("read of the check pipe");
			return;
		}
		char c;
		if (read(wl_wake[0], &c, 1) < 0 && errno != EINTR)
			wl_die("read of the check pipe");
	}
}

static inline void wl_ready(const char *fmt, ...)
{
	va_list ap;
	printf("ready %d", (int)getpid());
	if (fmt && *fmt) {
		putchar(' ');
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	putchar('\n');
	fflush(stdout);
}

/* One line appended with a single write: a reader never sees half of it. */
static inline void wl_result(const char *fmt, ...)
{
	char line[512], path[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	snprintf(path, sizeof(path), "%s/result", wl_dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		wl_die("open result");
	if (write(fd, line, (size_t)n) != n)
		wl_die("write result");
	close(fd);
}

/* The VmFlags line (after "VmFlags:") of the VMA that starts at addr, from
 * /proc/self/smaps, into line (of size len): 0, or -1 when no VMA starts there. */
static inline int wl_vmflags(const void *addr, char *line, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	if (!f)
		return -1;
	int in = 0, found = -1;
	while (fgets(line, (int)len, f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = s == (unsigned long)addr;
			continue;
		}
		if (in && strncmp(line, "VmFlags:", 8) == 0) {
			memmove(line, line + 8, strlen(line + 8) + 1);
			found = 0;
			break;
		}
	}
	fclose(f);
	return found;
}

/* Appends "FATAL signal N code C at 0xADDR in pid P ip 0xIP sp 0xSP" to DIR/result
 * (async-signal-safe), then lets the signal take its default action: a test waiting
 * for a check says why the task died, in which process (a forked child writes to the
 * same file) and where, instead of only that it did not answer. */
static void wl_on_fatal(int sig, siginfo_t *si, void *uc)
{
	unsigned long ip = 0, sp = 0;
#if defined(__x86_64__)
	ip = (unsigned long)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
	sp = (unsigned long)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
	ip = (unsigned long)((ucontext_t *)uc)->uc_mcontext.pc;
	sp = (unsigned long)((ucontext_t *)uc)->uc_mcontext.sp;
#else
	(void)uc;
#endif
	char line[160] = "FATAL signal ", path[4096];
	size_t n = strlen(line);
	const char *dir = wl_dir;
	unsigned long v[6] = { (unsigned long)sig,
			       (unsigned long)si->si_code,
			       (unsigned long)si->si_addr,
			       (unsigned long)syscall(SYS_getpid),
			       ip,
			       sp };
	const char *sep[6] = { " code ", " at 0x", " in pid ", " ip 0x", " sp 0x", "\n" };
	for (int i = 0; i < 6; i++) {
		char digits[24];
		int k = 0, base = i == 0 || i == 1 || i == 3 ? 10 : 16;
		unsigned long x = v[i];
		do {
			digits[k++] = "0123456789abcdef"[x % (unsigned long)base];
			x /= (unsigned long)base;
		} while (x && k < 24);
		while (k > 0)
			line[n++] = digits[--k];
		for (const char *s = sep[i]; *s; s++)
			line[n++] = *s;
	}
	size_t d = 0;
	for (; dir[d] && d < sizeof(path) - 8; d++)
		path[d] = dir[d];
	memcpy(path + d, "/result", 8);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		if (write(fd, line, n) < 0) {
			/* nothing more to say */
		}
		close(fd);
	}
	/* SA_RESETHAND: the default action, once the handler returns (the signal is blocked in it) */
	raise(sig);
}

/* Opt-in (the handlers are state a dump takes): fatal signals reported by wl_on_fatal. */
static inline void wl_report_fatal_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = wl_on_fatal;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (sigaction(sigs[i], &sa, NULL) < 0)
			wl_die("sigaction");
}

/* Why the last check failed: wl_fail() notes it and returns -1, wl_serve_checks()
 * writes it after "FAIL NAME: ". */
static char wl_failure[512] __attribute__((unused));

static inline int wl_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(wl_failure, sizeof(wl_failure), fmt, ap);
	va_end(ap);
	return -1;
}

/* Whether a SIGCHLD is pending (1 or 0; -1 by wl_fail when a second one is): the one there
 * is taken into *si with sigtimedwait and queued again as it was, so that a check looks at
 * it without consuming it. */
static inline int wl_pending_sigchld(siginfo_t *si)
{
	sigset_t chld, set, old;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &old);
	if (sigpending(&set) < 0)
		wl_die("sigpending");
	int have = sigismember(&set, SIGCHLD) == 1, second = -1;
	siginfo_t again;
	memset(si, 0, sizeof(*si));
	if (have) {
		struct timespec now = { 0, 0 };
		if (sigtimedwait(&chld, si, &now) != SIGCHLD)
			wl_die("sigtimedwait");
		second = sigtimedwait(&chld, &again, &now);
		if (syscall(SYS_rt_sigqueueinfo, getpid(), SIGCHLD, si) < 0)
			wl_die("rt_sigqueueinfo");
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (second >= 0)
		return wl_fail("a second SIGCHLD was pending (from %d, code %d)", again.si_pid, again.si_code);
	return have;
}

/* Everything a socket has queued, read out into buf (at most cap bytes) without waiting: its length. */
static inline size_t wl_recv_all(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		ssize_t r = recv(fd, buf + n, cap - n, MSG_DONTWAIT);
		if (r <= 0)
			return n;
		n += (size_t)r;
	}
}

/* The /proc/self/smaps entry of the VMA starting at addr (its header line and its fields),
 * into buf as one string; -1 when no VMA starts there. */
static inline int wl_smaps_of(void *addr, char *buf, size_t cap)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	if (!f)
		return -1;
	char line[512];
	size_t n = 0;
	int in = 0, found = -1;
	buf[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2) {
			if (in)
				break;
			in = s == (unsigned long)addr;
			found = in ? 0 : found;
		}
		if (in && n + strlen(line) < cap) {
			memcpy(buf + n, line, strlen(line) + 1);
			n += strlen(line);
		}
	}
	fclose(f);
	return found;
}

/* State, parent and exit code (fields 3, 4 and 52) of /proc/PID/stat; -1 when it is gone. */
static inline int wl_proc_stat(pid_t pid, char *state, int *ppid, long *exit_code)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	int field = 3;
	*state = 0;
	*ppid = 0;
	*exit_code = -1;
	for (char *tok = p ? strtok(p + 2, " ") : NULL; tok; tok = strtok(NULL, " "), field++) {
		if (field == 3)
			*state = tok[0];
		else if (field == 4)
			*ppid = atoi(tok);
		else if (field == 52)
			*exit_code = strtol(tok, NULL, 10);
	}
	return 0;
}

/* Runs `check` on every SIGUSR1, forever: "PASS NAME" (or "PASS what the check wrote in
 * wl_failure", its figures) or "FAIL NAME: why". */
static inline void wl_serve_checks(const char *name, int (*check)(void))
{
	for (;;) {
		wl_wait_check();
		wl_failure[0] = 0;
		if (check() == 0)
			wl_result("PASS %s", wl_failure[0] ? wl_failure : name);
		else
			wl_result("FAIL %s: %s", name, wl_failure);
	}
}

/* A workload of several cases, one per run, named by argv[2]: each sets its state up, and
 * its check returns 0 or wl_fail(...). */
struct wl_case {
	const char *name;
	void (*setup)(void);
	int (*check)(void);
};

/* Runs case argv[2] of `cases`: its setup, the ready line ("case=NAME"), then its check
 * on every SIGUSR1, forever. An unknown case exits 2 with the names. */
static inline int wl_run_case(int argc, char **argv, const struct wl_case *cases, size_t n)
{
	wl_init(argc, argv);
	for (size_t i = 0; argc > 2 && i < n; i++) {
		if (strcmp(argv[2], cases[i].name) != 0)
			continue;
		wl_install_check_handler();
		cases[i].setup();
		wl_ready("case=%s", cases[i].name);
		wl_serve_checks(cases[i].name, cases[i].check);
	}
	fprintf(stderr, "%s: which case?", argv[0]);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, " %s", cases[i].name);
	fputc('\n', stderr);
	return 2;
}

/* Moves the new fd `s` (a socket just made) to the number `fd`. */
static inline int wl_fd_at(int fd, int s, const char *what)
{
	if (s < 0)
		wl_die(what);
	if (s != fd) {
		if (dup2(s, fd) < 0)
			wl_die("dup2");
		close(s);
	}
	return fd;
}

/* An int socket option set (dies when refused) and read (-1 when refused). */
static inline void wl_set_int(int fd, int level, int name, int v, const char *what)
{
	if (setsockopt(fd, level, name, &v, sizeof(v)) < 0)
		wl_die(what);
}

static inline int wl_get_int(int fd, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, level, name, &v, &l) < 0)
		return -1;
	return v;
}

/* A TCP socket's state (TCP_ESTABLISHED, TCP_CLOSE...), -1 when it has none. */
static inline int wl_tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0)
		return -1;
	return ti.tcpi_state;
}

/* DIR/counter holds the value as text, replaced atomically (write + rename)
 * so a poller never reads a torn number. No fd stays open. */
static inline void wl_write_counter(unsigned long long v)
{
	char tmp[4096], path[4096], text[32];
	snprintf(tmp, sizeof(tmp), "%s/counter.tmp", wl_dir);
	snprintf(path, sizeof(path), "%s/counter", wl_dir);
	int n = snprintf(text, sizeof(text), "%llu\n", v);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		wl_die("open counter");
	if (write(fd, text, (size_t)n) != n)
		wl_die("write counter");
	close(fd);
	if (rename(tmp, path) < 0)
		wl_die("rename counter");
}

#endif
