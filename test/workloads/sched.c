/* Scheduling state, thread by thread: the main thread SCHED_RR priority 7 with
 * SCHED_RESET_ON_FORK (nice 2 kept beside it), one worker SCHED_FIFO priority 3, one
 * SCHED_OTHER|SCHED_RESET_ON_FORK at nice 4, one SCHED_OTHER at nice 5, one SCHED_BATCH
 * at nice 3 and one SCHED_IDLE. The workers block in pause().
 * Self-check (SIGUSR1): each thread's policy with its flag (sched_getscheduler), its
 * priority (sched_getparam) and nice (getpriority) read back: "PASS sched=6". */
#include "workload.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#ifndef SCHED_RESET_ON_FORK
#define SCHED_RESET_ON_FORK 0x40000000
#endif

struct want {
	int policy;
	int prio;
	int nice;
	pid_t tid;
};

static struct want wants[] = {
	{ SCHED_RR | SCHED_RESET_ON_FORK, 7, 2, 0 },
	{ SCHED_FIFO, 3, 0, 0 },
	{ SCHED_OTHER | SCHED_RESET_ON_FORK, 0, 4, 0 },
	{ SCHED_OTHER, 0, 5, 0 },
	{ SCHED_BATCH, 0, 3, 0 },
	{ SCHED_IDLE, 0, 0, 0 },
};
#define N (int)(sizeof(wants) / sizeof(wants[0]))

static void set(struct want *w)
{
	pid_t tid = (pid_t)syscall(SYS_gettid);
	if (setpriority(PRIO_PROCESS, (id_t)tid, w->nice) < 0)
		wl_die("setpriority");
	struct sched_param p = { .sched_priority = w->prio };
	if (sched_setscheduler(0, w->policy, &p) < 0)
		wl_die("sched_setscheduler");
	__atomic_store_n(&w->tid, tid, __ATOMIC_RELEASE);
}

static void *worker(void *arg)
{
	set(arg);
	for (;;)
		pause();
	return NULL;
}

static int check(void)
{
	for (int i = 0; i < N; i++) {
		struct want *w = &wants[i];
		int policy = sched_getscheduler(w->tid);
		struct sched_param p;
		if (policy < 0 || sched_getparam(w->tid, &p) < 0)
			return wl_fail("thread %d: %s", w->tid, strerror(errno));
		errno = 0;
		int nice = getpriority(PRIO_PROCESS, (id_t)w->tid);
		if (errno)
			return wl_fail("getpriority(%d): %s", w->tid, strerror(errno));
		if (policy != w->policy)
			return wl_fail("thread %d: policy 0x%x, not 0x%x", w->tid, policy, w->policy);
		if (p.sched_priority != w->prio)
			return wl_fail("thread %d: priority %d, not %d", w->tid, p.sched_priority, w->prio);
		/* SCHED_IDLE keeps a nice of its own only from Linux 5.9 on: not checked */
		if ((w->policy & ~SCHED_RESET_ON_FORK) != SCHED_IDLE && nice != w->nice)
			return wl_fail("thread %d: nice %d, not %d", w->tid, nice, w->nice);
	}
	snprintf(wl_failure, sizeof(wl_failure), "sched=%d", N);
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	for (int i = 1; i < N; i++) {
		pthread_t th;
		if (pthread_create(&th, NULL, worker, &wants[i]) != 0)
			wl_die("pthread_create");
		while (!__atomic_load_n(&wants[i].tid, __ATOMIC_ACQUIRE))
			sched_yield();
	}
	/* last: a thread made after SCHED_RESET_ON_FORK would start as SCHED_OTHER */
	set(&wants[0]);
	wl_install_check_handler();
	wl_ready("tids=%d,%d,%d,%d,%d,%d", wants[0].tid, wants[1].tid, wants[2].tid, wants[3].tid, wants[4].tid,
		 wants[5].tid);
	wl_serve_checks("sched", check);
}
