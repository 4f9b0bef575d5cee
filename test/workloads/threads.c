/* A process with worker threads (argv[2]: how many, default 4) that keep running and
 * keep checking what is their own across a checkpoint: general and vector registers
 * (a loop holding thread-specific values in r12-r15 and xmm8), a __thread variable
 * (TLS), the signal mask, the alternate signal stack, the thread name, the nice value,
 * and a signal pending for the thread alone. Each worker alternates a stretch of the
 * register loop with a short nanosleep, so a dump finds threads in both. The main
 * thread waits in sigsuspend; on SIGUSR1 it makes sure every worker has moved on twice
 * and that none has seen a wrong value: "PASS threads=N" (or "FAIL why").
 * The ready line names the TIDs: "tids=T1,T2,…". With argv[3] "churn" one more thread
 * makes and joins short-lived threads without a pause, so that a dump meets threads
 * that appear and end while it freezes the process (its count is "churned=N"). With
 * argv[3] "exiter" one more thread waits for SIGUSR2 (blocked everywhere) and exits when
 * it comes; the ready line names it: "exiter=TID". */
#include "workload.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>

#define MAXT 128

struct worker {
	int index;
	pid_t tid;
	atomic_ulong rounds;
	char failure[160];
	atomic_int failed;
	char stack[16384] __attribute__((aligned(16)));
};

static struct worker workers[MAXT];
static int nworkers = 4;
static __thread uint64_t tls_value;
static atomic_int ready_count;
static atomic_ulong churned;

static void *nothing(void *arg)
{
	return arg;
}

static void *churn(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_t th;
		if (pthread_create(&th, NULL, nothing, NULL) == 0) {
			pthread_join(th, NULL);
			atomic_fetch_add(&churned, 1);
		}
	}
	return NULL;
}

static void note_failure(struct worker *w, const char *fmt, ...)
{
	if (atomic_load(&w->failed))
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->failure, sizeof(w->failure), fmt, ap);
	va_end(ap);
	atomic_store(&w->failed, 1);
}

static pid_t exiter_tid;

static void *exiter(void *arg)
{
	(void)arg;
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	exiter_tid = (pid_t)syscall(SYS_gettid);
	atomic_fetch_add(&ready_count, 1);
	while (sigwaitinfo(&usr2, NULL) != SIGUSR2)
		;
	return NULL;
}

/* 0 when r12-r15 and xmm8 kept the seed-derived values for `iters` rounds. */
static uint64_t registers_hold(uint64_t seed, uint64_t iters)
{
	uint64_t bad;
	__asm__ volatile("mov %[s], %%r12\n\t"
			 "lea 1(%[s]), %%r13\n\t"
			 "lea 2(%[s]), %%r14\n\t"
			 "lea 3(%[s]), %%r15\n\t"
			 "movq %[s], %%xmm8\n\t"
			 "xor %[bad], %[bad]\n\t"
			 "1:\n\t"
			 "cmp %[s], %%r12\n\t"
			 "jne 2f\n\t"
			 "lea 1(%[s]), %%rax\n\t"
			 "cmp %%rax, %%r13\n\t"
			 "jne 2f\n\t"
			 "lea 2(%[s]), %%rax\n\t"
			 "cmp %%rax, %%r14\n\t"
			 "jne 2f\n\t"
			 "lea 3(%[s]), %%rax\n\t"
			 "cmp %%rax, %%r15\n\t"
			 "jne 2f\n\t"
			 "movq %%xmm8, %%rax\n\t"
			 "cmp %[s], %%rax\n\t"
			 "jne 2f\n\t"
			 "dec %[n]\n\t"
			 "jnz 1b\n\t"
			 "jmp 3f\n\t"
			 "2:\n\t"
			 "mov $1, %[bad]\n\t"
			 "3:\n\t"
			 : [bad] "=&r"(bad), [n] "+r"(iters)
			 : [s] "r"(seed)
			 : "rax", "r12", "r13", "r14", "r15", "xmm8", "cc");
	return bad;
}

static int worker_signal(int index)
{
	return SIGRTMIN + 1 + index;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	char name[16];
	w->tid = (pid_t)syscall(SYS_gettid);
	tls_value = 0x1000 + (uint64_t)w->index;
	snprintf(name, sizeof(name), "worker-%d", w->index);
	prctl(PR_SET_NAME, name);
	setpriority(PRIO_PROCESS, (id_t)w->tid, 1 + w->index % 5);
	/* each its own mask: SIGUSR1 and SIGUSR2 for all, and its own real-time signal,
	 * which is then sent to this thread alone and stays pending */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	sigaddset(&mask, worker_signal(w->index));
	pthread_sigmask(SIG_SETMASK, &mask, NULL);
	stack_t ss = { .ss_sp = w->stack, .ss_size = sizeof(w->stack), .ss_flags = 0 };
	if (sigaltstack(&ss, NULL) < 0)
		wl_die("sigaltstack");
	syscall(SYS_tgkill, getpid(), w->tid, worker_signal(w->index));
	atomic_fetch_add(&ready_count, 1);
	uint64_t seed = 0x5eed0000u + (uint64_t)w->index * 0x100;
	for (;;) {
		/* 200000 rounds with 4 workers, fewer with many: the machine has 2 cores */
		if (registers_hold(seed, 800000 / (uint64_t)nworkers + 1000))
			note_failure(w, "worker %d: its registers changed under it", w->index);
		if (tls_value != 0x1000 + (uint64_t)w->index)
			note_failure(w, "worker %d: TLS holds %llx", w->index, (unsigned long long)tls_value);
		sigset_t now;
		pthread_sigmask(SIG_SETMASK, NULL, &now);
		if (!sigismember(&now, worker_signal(w->index)) || !sigismember(&now, SIGUSR2) ||
		    sigismember(&now, worker_signal((w->index + 1) % nworkers)))
			note_failure(w, "worker %d: its signal mask changed", w->index);
		sigset_t pending;
		sigpending(&pending);
		if (!sigismember(&pending, worker_signal(w->index)))
			note_failure(w, "worker %d: its pending signal is gone", w->index);
		stack_t cur;
		if (sigaltstack(NULL, &cur) < 0 || cur.ss_sp != w->stack || cur.ss_size != sizeof(w->stack))
			note_failure(w, "worker %d: its altstack is %p+%zu", w->index, cur.ss_sp, cur.ss_size);
		char got[16] = "";
		prctl(PR_GET_NAME, got);
		if (strcmp(got, name) != 0)
			note_failure(w, "worker %d: its name is %s", w->index, got);
		errno = 0;
		int nice = getpriority(PRIO_PROCESS, (id_t)w->tid);
		if (nice != 1 + w->index % 5)
			note_failure(w, "worker %d: nice %d", w->index, nice);
		atomic_fetch_add(&w->rounds, 1);
		struct timespec ts = { 0, 5 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static int check(char *why, size_t len)
{
	unsigned long before[MAXT];
	for (int i = 0; i < nworkers; i++)
		before[i] = atomic_load(&workers[i].rounds);
	/* every worker must move on (twice: a round that was half-way does not count) */
	for (int tries = 0; tries < 1000; tries++) {
		int all = 1;
		for (int i = 0; i < nworkers; i++)
			if (atomic_load(&workers[i].rounds) < before[i] + 2)
				all = 0;
		if (all)
			break;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	for (int i = 0; i < nworkers; i++) {
		if (atomic_load(&workers[i].failed)) {
			snprintf(why, len, "%s", workers[i].failure);
			return -1;
		}
		if (atomic_load(&workers[i].rounds) < before[i] + 2) {
			snprintf(why, len, "worker %d stands still", i);
			return -1;
		}
	}
	if (tls_value != 0x77)
		snprintf(why, len, "the main thread's TLS holds %llx", (unsigned long long)tls_value);
	return tls_value == 0x77 ? 0 : -1;
}

/* The churner makes another thread within 10 s (on a busy machine it may not get a
 * turn while the workers are checked). */
static int churns_on(unsigned long before)
{
	for (int tries = 0; tries < 1000 && atomic_load(&churned) == before; tries++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return atomic_load(&churned) != before;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	if (argc > 2)
		nworkers = atoi(argv[2]);
	if (nworkers < 1 || nworkers > MAXT)
		nworkers = 4;
	tls_value = 0x77;
	wl_install_check_handler();
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	int exiting = argc > 3 && strcmp(argv[3], "exiter") == 0;
	if (exiting)
		sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, &old);
	/* sigsuspend lets SIGUSR1 in, never the exiter's SIGUSR2 */
	if (exiting)
		sigaddset(&old, SIGUSR2);
	for (int i = 0; i < nworkers; i++) {
		pthread_t th;
		workers[i].index = i;
		if (pthread_create(&th, NULL, work, &workers[i]) != 0)
			wl_die("pthread_create");
	}
	while (atomic_load(&ready_count) < nworkers)
		usleep(1000);
	int churning = argc > 3 && strcmp(argv[3], "churn") == 0;
	if (churning) {
		pthread_t th;
		if (pthread_create(&th, NULL, churn, NULL) != 0)
			wl_die("pthread_create churn");
	}
	char extra[32] = "";
	if (exiting) {
		pthread_t th;
		if (pthread_create(&th, NULL, exiter, NULL) != 0)
			wl_die("pthread_create exiter");
		while (atomic_load(&ready_count) < nworkers + 1)
			usleep(1000);
		snprintf(extra, sizeof(extra), " exiter=%d", exiter_tid);
	}
	char tids[MAXT * 12] = "";
	for (int i = 0; i < nworkers; i++)
		snprintf(tids + strlen(tids), sizeof(tids) - strlen(tids), "%s%d", i ? "," : "", workers[i].tid);
	wl_ready("threads=%d tids=%s%s", nworkers, tids, extra);
	for (;;) {
		sigsuspend(&old);
		if (!wl_check_requested)
			continue;
		wl_check_requested = 0;
		char why[200] = "";
		unsigned long churned_before = atomic_load(&churned);
		if (check(why, sizeof(why)))
			wl_result("FAIL %s", why);
		else if (churning && !churns_on(churned_before))
			wl_result("FAIL the churning thread stands still");
		else
			wl_result("PASS threads=%d", nworkers);
	}
}
