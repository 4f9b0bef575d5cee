/* Seccomp filters shared by threads, then a filter installed with SECCOMP_FILTER_FLAG_TSYNC
 * (criu's zdtm seccomp_filter_tsync): the main thread installs filter F (getpgid fails with
 * ERRNO_F) and starts thread T, which inherits it, one filter of both. argv[2] "prefix": the
 * main thread then adds filter M of its own (getpriority fails with ERRNO_M), which T has not.
 * TSYNC succeeds only while every other thread's filters are the caller's or an older part
 * of them, and then gives them all of the caller's: a restore that gives each thread a copy
 * of its own breaks it (the kernel answers with the TID of the thread it cannot synchronise).
 * On SIGUSR1, check round N: both threads first check the filters they have (T has M once
 * a round gave it), then the main thread installs one more filter with TSYNC (getsid fails
 * with ERRNO_ROUND + N) and both check that they have it, and M in "prefix".
 * "PASS seccomp-tsync N" or "FAIL seccomp-tsync: why". */
#include "workload.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>

#define ERRNO_F	    1001
#define ERRNO_M	    1002
#define ERRNO_ROUND 2000

static int prefix_mode;
/* The main thread asks (round, M expected, then seq), T answers (its failure, then seq). */
static atomic_int ask_seq, answer_seq, ask_round, ask_m;
static char t_failure[200];

static long install(int nr, int err, unsigned int flags)
{
	struct sock_filter prog[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned int)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog fprog = { sizeof(prog) / sizeof(prog[0]), prog };
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog);
}

/* Whether call `nr` fails with `err` (err 0: succeeds); notes why not in `why`. */
static int expect(const char *who, int nr, int err, char *why, size_t len)
{
	errno = 0;
	long r = nr == SYS_getpriority ? syscall(nr, PRIO_PROCESS, 0) : syscall(nr, 0);
	int e = r == -1 ? errno : 0;
	if (e == err)
		return 0;
	snprintf(why, len, "thread %s: syscall %d gave errno %d, want %d", who, nr, e, err);
	return -1;
}

/* F always; M if `has_m`; the filter of round `round` (the newest) if any. */
static int check_calls(const char *who, int round, int has_m, char *why, size_t len)
{
	if (expect(who, SYS_getpgid, ERRNO_F, why, len) < 0 ||
	    expect(who, SYS_getpriority, has_m ? ERRNO_M : 0, why, len) < 0)
		return -1;
	return round > 0 ? expect(who, SYS_getsid, ERRNO_ROUND + round, why, len) : 0;
}

static void *thread_t(void *arg)
{
	(void)arg;
	for (;;) {
		int seq = atomic_load(&ask_seq);
		if (seq != atomic_load(&answer_seq)) {
			t_failure[0] = 0;
			check_calls("T", atomic_load(&ask_round), atomic_load(&ask_m), t_failure, sizeof(t_failure));
			atomic_store(&answer_seq, seq);
		}
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* Both threads check their filters: the main thread has M in "prefix", T has it if `t_m`. */
static int check_both(int round, int t_m, char *why, size_t len)
{
	atomic_store(&ask_round, round);
	atomic_store(&ask_m, t_m);
	int seq = atomic_fetch_add(&ask_seq, 1) + 1;
	for (int i = 0; i < 5000 && atomic_load(&answer_seq) != seq; i++)
		usleep(1000);
	if (atomic_load(&answer_seq) != seq)
		return snprintf(why, len, "thread T does not answer"), -1;
	if (t_failure[0])
		return snprintf(why, len, "%s", t_failure), -1;
	return check_calls("main", round, prefix_mode, why, len);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	prefix_mode = argc > 2 && strcmp(argv[2], "prefix") == 0;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		wl_die("PR_SET_NO_NEW_PRIVS");
	if (install(SYS_getpgid, ERRNO_F, 0) < 0)
		wl_die("seccomp F");
	pthread_t th;
	if (pthread_create(&th, NULL, thread_t, NULL) != 0)
		wl_die("pthread_create");
	if (prefix_mode && install(SYS_getpriority, ERRNO_M, 0) < 0)
		wl_die("seccomp M");
	wl_install_check_handler();
	wl_ready("");
	int done = 0; /* rounds whose TSYNC succeeded */
	for (;;) {
		wl_wait_check();
		char why[200] = "";
		if (check_both(done, prefix_mode && done > 0, why, sizeof(why)) < 0) {
			wl_result("FAIL seccomp-tsync: before round %d: %s", done + 1, why);
			continue;
		}
		long r = install(SYS_getsid, ERRNO_ROUND + done + 1, SECCOMP_FILTER_FLAG_TSYNC);
		if (r > 0) {
			wl_result("FAIL seccomp-tsync: TSYNC cannot synchronise thread %ld", r);
			continue;
		}
		if (r < 0) {
			wl_result("FAIL seccomp-tsync: seccomp with TSYNC: %s", strerror(errno));
			continue;
		}
		done++;
		if (check_both(done, prefix_mode, why, sizeof(why)) < 0)
			wl_result("FAIL seccomp-tsync: round %d: %s", done, why);
		else
			wl_result("PASS seccomp-tsync %d", done);
	}
}
