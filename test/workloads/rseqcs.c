/* A thread asleep inside an rseq critical section (glibc's rseq registration), so that a
 * dump finds it there every time. The section makes the futex wait itself: it sleeps
 * while the futex word `go` is 0, and its last instruction (the commit) stores the
 * round's number. A thread that slept in a section is preempted, and the kernel sends it
 * to the abort handler on its way back to user space; the handler counts the abort and
 * enters the section again, whose futex wait now returns at once (go is 1): the commit.
 * After a commit the thread checks that its struct rseq still points at the section:
 * the kernel clears rseq_cs when it finds the thread outside the section at a return to
 * user space, and never while the thread is inside it without aborting it. A commit with
 * rseq_cs cleared means the section ran on across a preemption unprotected: "FAIL".
 *
 * On SIGUSR1 the main thread opens a round (go = 1, wake), waits for the commit, closes
 * it (go = 0, wake) and waits until the worker sleeps in the section again, its pc
 * inside the section (/proc/self/task/TID/syscall): "PASS rseq rounds=N aborts=M" or
 * "FAIL why". The ready line names the worker and its section: "tid=TID cs=0xDESC
 * start=0xSTART end=0xEND abort=0xABORT".
 *
 * With argv[2] "norestart" the section carries the deprecated flags
 * RSEQ_CS_FLAG_NO_RESTART_ON_PREEMPT, _SIGNAL and _MIGRATE (a dump must leave the thread
 * in the section and save its rseq_cs, as criu does). Kernels that no longer honour them
 * kill the thread when it wakes in the section: such a workload is for dumps only. */
#include "workload.h"

#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <time.h>

struct cs_desc {
	uint32_t version, flags;
	uint64_t start_ip, post_commit_offset, abort_ip;
};

static volatile int go;
static atomic_int commits, aborts;
static volatile unsigned long committed;
static atomic_int bad;
static char bad_why[200];
static volatile struct rseq *worker_rseq;
static atomic_int worker_tid;
static int norestart;

static long futex(volatile int *word, int op, int val)
{
	return syscall(SYS_futex, word, op, val, NULL, NULL, 0);
}

/* One pass of the section: 0 when it committed `value`, 1 when it was aborted. */
static int section(volatile struct rseq *rs, unsigned long value)
{
	__asm__ __volatile__ goto(".pushsection __rseq_cs, \"aw\"\n\t"
				  ".balign 32\n\t"
				  "3:\n\t"
				  ".long 0, 0\n\t"
				  ".quad 1f, (2f - 1f), 4f\n\t"
				  ".popsection\n\t"
				  ".pushsection __rseq_cs, \"aw\"\n\t"
				  ".balign 32\n\t"
				  "5:\n\t"
				  ".long 0, 7\n\t" /* NO_RESTART_ON_PREEMPT, _SIGNAL, _MIGRATE */
				  ".quad 1f, (2f - 1f), 4f\n\t"
				  ".popsection\n\t"
				  "leaq 3b(%%rip), %%rax\n\t"
				  "leaq 5b(%%rip), %%rcx\n\t"
				  "testl %[norestart], %[norestart]\n\t"
				  "cmovnz %%rcx, %%rax\n\t"
				  "movq %%rax, %[rseq_cs]\n\t"
				  "1:\n\t"
				  /* futex(&go, FUTEX_WAIT_PRIVATE, 0, NULL) */
				  "movl $202, %%eax\n\t"
				  "movq %[word], %%rdi\n\t"
				  "movl $128, %%esi\n\t"
				  "xorl %%edx, %%edx\n\t"
				  "xorl %%r10d, %%r10d\n\t"
				  "syscall\n\t"
				  "movq %[value], %[slot]\n\t" /* the commit */
				  "2:\n\t"
				  ".pushsection __rseq_failure, \"ax\"\n\t"
				  ".byte 0x0f, 0xb9, 0x3d\n\t"
				  ".long 0x53053053\n\t" /* RSEQ_SIG */
				  "4:\n\t"
				  "jmp %l[aborted]\n\t"
				  ".popsection\n\t"
				  :
				  : [rseq_cs] "m"(rs->rseq_cs), [word] "r"(&go), [slot] "m"(committed),
				    [value] "r"(value), [norestart] "r"(norestart)
				  : "memory", "cc", "rax", "rcx", "rdx", "rsi", "rdi", "r10", "r11"
				  : aborted);
	return 0;
aborted:
	return 1;
}

static void *worker(void *arg)
{
	(void)arg;
	/* signals go to the main thread (one would abort the section: harmless, but noisy) */
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	volatile struct rseq *rs = (volatile struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
	worker_rseq = rs;
	atomic_store(&worker_tid, (int)syscall(SYS_gettid));
	for (unsigned long round = 1;; round++) {
		while (section(rs, round))
			atomic_fetch_add(&aborts, 1);
		if (rs->rseq_cs == 0 && !atomic_load(&bad)) {
			snprintf(bad_why, sizeof(bad_why),
				 "round %lu committed with rseq_cs cleared: the section ran on across a preemption "
				 "without its abort",
				 round);
			atomic_store(&bad, 1);
		}
		rs->rseq_cs = 0;
		atomic_fetch_add(&commits, 1);
		futex((volatile int *)&commits, FUTEX_WAKE_PRIVATE, 1);
		/* outside the section until the round is closed */
		while (go)
			futex(&go, FUTEX_WAIT_PRIVATE, 1);
	}
	return NULL;
}

/* Whether the worker sleeps in its section's futex wait (its pc inside the section). */
static int asleep_in_section(char *why, size_t len)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", atomic_load(&worker_tid));
	FILE *f = fopen(path, "re");
	if (!f)
		return snprintf(why, len, "%s: %s", path, strerror(errno)), 0;
	char *got = fgets(buf, sizeof(buf), f);
	fclose(f);
	long nr;
	unsigned long a[6], sp, pc;
	if (!got ||
	    sscanf(buf, "%ld %lx %lx %lx %lx %lx %lx %lx %lx", &nr, &a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &sp,
		   &pc) != 9 ||
	    nr != SYS_futex || a[0] != (unsigned long)&go)
		return snprintf(why, len, "the worker is not in its futex wait (%s)", got ? buf : "?"), 0;
	uint64_t desc = worker_rseq->rseq_cs;
	if (desc == 0)
		return snprintf(why, len, "the worker waits, but its rseq_cs is cleared"), 0;
	const struct cs_desc *d = (const struct cs_desc *)(uintptr_t)desc;
	if (pc < d->start_ip || pc >= d->start_ip + d->post_commit_offset)
		return snprintf(why, len, "the worker waits at pc 0x%lx, outside its section 0x%lx+%lu", pc,
				(unsigned long)d->start_ip, (unsigned long)d->post_commit_offset),
		       0;
	return 1;
}

/* Polls `ok` for up to about 10 s. */
static int eventually(int (*ok)(char *, size_t), char *why, size_t len)
{
	for (int i = 0; i < 10000; i++) {
		if (ok(why, len))
			return 1;
		struct timespec ts = { 0, 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

static int check(char *why, size_t len)
{
	int before = atomic_load(&commits);
	go = 1;
	futex(&go, FUTEX_WAKE_PRIVATE, 1);
	for (int i = 0; i < 10000 && atomic_load(&commits) == before; i++) {
		struct timespec ts = { 0, 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (atomic_load(&commits) == before)
		return snprintf(why, len, "the worker did not commit its round"), -1;
	go = 0;
	futex(&go, FUTEX_WAKE_PRIVATE, 1);
	if (atomic_load(&bad))
		return snprintf(why, len, "%s", bad_why), -1;
	if (!eventually(asleep_in_section, why, len))
		return -1;
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	norestart = argc > 2 && strcmp(argv[2], "norestart") == 0;
	if (__rseq_size == 0) {
		fprintf(stderr, "rseqcs: glibc did not register rseq (GLIBC_TUNABLES=glibc.pthread.rseq=0?)\n");
		return 1;
	}
	pthread_t th;
	if (pthread_create(&th, NULL, worker, NULL) != 0)
		wl_die("pthread_create");
	char why[300];
	while (atomic_load(&worker_tid) == 0)
		sched_yield();
	if (!eventually(asleep_in_section, why, sizeof(why))) {
		fprintf(stderr, "rseqcs: %s\n", why);
		return 1;
	}
	const struct cs_desc *d = (const struct cs_desc *)(uintptr_t)worker_rseq->rseq_cs;
	wl_install_check_handler();
	wl_ready("tid=%d cs=%p start=0x%lx end=0x%lx abort=0x%lx", atomic_load(&worker_tid), (const void *)d,
		 (unsigned long)d->start_ip, (unsigned long)(d->start_ip + d->post_commit_offset),
		 (unsigned long)d->abort_ip);
	for (;;) {
		wl_wait_check();
		if (check(why, sizeof(why)))
			wl_result("FAIL %s", why);
		else
			wl_result("PASS rseq rounds=%d aborts=%d", atomic_load(&commits), atomic_load(&aborts));
	}
}
