/* Two threads, each under a seccomp filter of its own that fails calls a dump runs inside
 * the task with an errno of its own: thread A's fails prctl (ERRNO_A), thread B's
 * sigaltstack and rt_sigaction (ERRNO_B). The main thread has none. Self-check (SIGUSR1):
 * each thread in turn makes the calls, and they fail exactly where its filter says
 * ("PASS seccomp-threads") or "FAIL seccomp-threads: why". */
#include "workload.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>

#define ERRNO_A 1234
#define ERRNO_B 1235

struct worker {
	const char *name;
	int nr1, nr2, err;
	pid_t tid;
	atomic_int asked; /* rounds asked by the main thread */
	atomic_int done;  /* rounds answered */
	atomic_int ready;
	char failure[200];
};

static struct worker workers[2] = {
	{ .name = "A", .nr1 = SYS_prctl, .nr2 = SYS_prctl, .err = ERRNO_A },
	{ .name = "B", .nr1 = SYS_sigaltstack, .nr2 = SYS_rt_sigaction, .err = ERRNO_B },
};

/* -1 and errno for a filtered call; the return value otherwise. */
static long try_call(int nr)
{
	errno = 0;
	if (nr == SYS_prctl)
		return syscall(SYS_prctl, PR_GET_DUMPABLE, 0, 0, 0, 0);
	if (nr == SYS_sigaltstack) {
		stack_t ss;
		return syscall(SYS_sigaltstack, NULL, &ss);
	}
	struct sigaction old;
	return sigaction(SIGUSR2, NULL, &old);
}

/* Checks every call against the filter of `w` (NULL: none), noting the first mismatch. */
static int check_calls(const struct worker *w, const char *who, char *failure, size_t len)
{
	static const int calls[] = { SYS_prctl, SYS_sigaltstack, SYS_rt_sigaction };
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		int nr = calls[i];
		int filtered = w && (nr == w->nr1 || nr == w->nr2);
		long r = try_call(nr);
		int e = errno;
		if (filtered && (r != -1 || e != w->err)) {
			snprintf(failure, len, "thread %s: syscall %d returned %ld errno %d, its filter gives errno %d",
				 who, nr, r, e, w->err);
			return -1;
		}
		if (!filtered && r == -1) {
			snprintf(failure, len,
				 "thread %s: syscall %d failed with errno %d, no filter of its own denies it", who, nr,
				 e);
			return -1;
		}
	}
	char path[64], status[4096];
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)syscall(SYS_gettid));
	int fd = open(path, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, status, sizeof(status) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0) {
		snprintf(failure, len, "thread %s: reading %s failed", who, path);
		return -1;
	}
	status[n] = 0;
	if (!strstr(status, w ? "Seccomp:\t2" : "Seccomp:\t0")) {
		snprintf(failure, len, "thread %s: %s does not say Seccomp: %d", who, path, w ? 2 : 0);
		return -1;
	}
	return 0;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct sock_filter prog[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)w->nr1, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)w->nr2, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)w->err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog fprog = { sizeof(prog) / sizeof(prog[0]), prog };
	w->tid = (pid_t)syscall(SYS_gettid);
	/* no PR_SET_NO_NEW_PRIVS: as root, CAP_SYS_ADMIN lets the thread install it */
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) < 0)
		wl_die("seccomp");
	atomic_store(&w->ready, 1);
	for (int seen = 0;;) {
		int asked = atomic_load(&w->asked);
		if (asked != seen) {
			w->failure[0] = 0;
			check_calls(w, w->name, w->failure, sizeof(w->failure));
			seen = asked;
			atomic_store(&w->done, asked);
		}
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static int check(void)
{
	if (check_calls(NULL, "main", wl_failure, sizeof(wl_failure)) < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		struct worker *w = &workers[i];
		int round = atomic_fetch_add(&w->asked, 1) + 1;
		while (atomic_load(&w->done) != round) {
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
		if (w->failure[0])
			return wl_fail("%s", w->failure);
	}
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	for (int i = 0; i < 2; i++) {
		pthread_t th;
		if (pthread_create(&th, NULL, work, &workers[i]) != 0)
			wl_die("pthread_create");
	}
	for (int i = 0; i < 2; i++)
		while (!atomic_load(&workers[i].ready)) {
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
	wl_ready("tids=%d,%d", workers[0].tid, workers[1].tid);
	wl_serve_checks("seccomp-threads", check);
}
