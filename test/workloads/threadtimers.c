/* POSIX timers aimed at a thread and at the process: a worker thread is the
 * SIGEV_THREAD_ID target of a periodic CLOCK_MONOTONIC timer (SIGRTMIN+3, value 0x5ca1,
 * every 20 ms), a process-directed CLOCK_REALTIME timer fires SIGRTMIN+4 every 30 ms,
 * and a CLOCK_BOOTTIME one-shot far away (1000 s) never fires. One timer made between
 * them is deleted again, so the ids have a hole a restore must keep.
 * Self-check (SIGUSR1): every timer answers to the id it had, with its interval exact
 * and its time left no more than it was; the deleted id is unknown (EINVAL); then both
 * periodic timers fire on (polled for up to 5 s), each signal of the thread's timer in
 * the worker and carrying its timer's id and value: "PASS thread=N process=M". */
#include "workload.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>

#define THREAD_VALUE 0x5ca1

static timer_t t_thread, t_gone, t_proc, t_far;
static pid_t worker_tid;
static atomic_int thread_hits, proc_hits, wrong_thread, wrong_info;
static struct itimerspec far_at_start;

static void on_thread_timer(int s, siginfo_t *si, void *c)
{
	(void)s, (void)c;
	if ((pid_t)syscall(SYS_gettid) != worker_tid)
		atomic_fetch_add(&wrong_thread, 1);
	if (si->si_code != SI_TIMER || si->si_value.sival_int != THREAD_VALUE || si->si_timerid != (int)(long)t_thread)
		atomic_fetch_add(&wrong_info, 1);
	atomic_fetch_add(&thread_hits, 1);
}

static void on_proc_timer(int s, siginfo_t *si, void *c)
{
	(void)s, (void)c;
	if (si->si_code != SI_TIMER || si->si_timerid != (int)(long)t_proc)
		atomic_fetch_add(&wrong_info, 1);
	atomic_fetch_add(&proc_hits, 1);
}

static void *worker(void *arg)
{
	(void)arg;
	worker_tid = (pid_t)syscall(SYS_gettid);
	for (;;)
		pause();
	return NULL;
}

static void handle(int sig, void (*fn)(int, siginfo_t *, void *))
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fn;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) < 0)
		wl_die("sigaction");
}

static timer_t make(clockid_t clock, int notify, int sig, int value)
{
	struct sigevent sev;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = notify;
	sev.sigev_signo = sig;
	sev.sigev_value.sival_int = value;
	if (notify == SIGEV_THREAD_ID)
		sev._sigev_un._tid = worker_tid;
	timer_t id;
	if (timer_create(clock, &sev, &id) < 0)
		wl_die("timer_create");
	return id;
}

static void arm(timer_t id, time_t sec, long nsec, time_t isec, long insec)
{
	struct itimerspec its = { { isec, insec }, { sec, nsec } };
	if (timer_settime(id, 0, &its, NULL) < 0)
		wl_die("timer_settime");
}

static int same_interval(timer_t id, const char *name, time_t sec, long nsec)
{
	struct itimerspec now;
	if (timer_gettime(id, &now) < 0)
		return wl_fail("timer_gettime(%s, id %ld): %s", name, (long)id, strerror(errno));
	if (now.it_interval.tv_sec != sec || now.it_interval.tv_nsec != nsec)
		return wl_fail("%s: interval %ld.%09ld", name, (long)now.it_interval.tv_sec, now.it_interval.tv_nsec);
	return 0;
}

static int check(void)
{
	struct itimerspec now;
	if (same_interval(t_thread, "thread timer", 0, 20000000) ||
	    same_interval(t_proc, "process timer", 0, 30000000) || same_interval(t_far, "one-shot", 0, 0))
		return -1;
	timer_gettime(t_far, &now);
	if (now.it_value.tv_sec > far_at_start.it_value.tv_sec ||
	    now.it_value.tv_sec < far_at_start.it_value.tv_sec - 100 ||
	    (now.it_value.tv_sec == 0 && now.it_value.tv_nsec == 0))
		return wl_fail("one-shot: %ld s left, %ld at start", (long)now.it_value.tv_sec,
			       (long)far_at_start.it_value.tv_sec);
	if (timer_gettime(t_gone, &now) == 0 || errno != EINVAL)
		return wl_fail("the deleted timer %ld answers", (long)t_gone);
	int th0 = atomic_load(&thread_hits), pr0 = atomic_load(&proc_hits);
	for (int i = 0; i < 5000; i++) {
		if (atomic_load(&thread_hits) >= th0 + 3 && atomic_load(&proc_hits) >= pr0 + 3)
			break;
		struct timespec ms = { 0, 1000000 };
		nanosleep(&ms, NULL);
	}
	if (atomic_load(&thread_hits) < th0 + 3 || atomic_load(&proc_hits) < pr0 + 3)
		return wl_fail("timers stopped: thread %d -> %d, process %d -> %d", th0, atomic_load(&thread_hits), pr0,
			       atomic_load(&proc_hits));
	if (atomic_load(&wrong_thread))
		return wl_fail("%d signals of the thread's timer went to another thread", atomic_load(&wrong_thread));
	if (atomic_load(&wrong_info))
		return wl_fail("%d timer signals with a wrong id, value or code", atomic_load(&wrong_info));
	snprintf(wl_failure, sizeof(wl_failure), "thread=%d process=%d", atomic_load(&thread_hits),
		 atomic_load(&proc_hits));
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	handle(SIGRTMIN + 3, on_thread_timer);
	handle(SIGRTMIN + 4, on_proc_timer);
	pthread_t th;
	if (pthread_create(&th, NULL, worker, NULL) != 0)
		wl_die("pthread_create");
	while (!__atomic_load_n(&worker_tid, __ATOMIC_ACQUIRE))
		sched_yield();
	t_thread = make(CLOCK_MONOTONIC, SIGEV_THREAD_ID, SIGRTMIN + 3, THREAD_VALUE);
	t_gone = make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 4, 0);
	t_proc = make(CLOCK_REALTIME, SIGEV_SIGNAL, SIGRTMIN + 4, 0);
	t_far = make(CLOCK_BOOTTIME, SIGEV_SIGNAL, SIGRTMIN + 4, 0);
	if (timer_delete(t_gone) < 0)
		wl_die("timer_delete");
	arm(t_thread, 0, 20000000, 0, 20000000);
	arm(t_proc, 0, 30000000, 0, 30000000);
	arm(t_far, 1000, 0, 0, 0);
	timer_gettime(t_far, &far_at_start);
	wl_install_check_handler();
	wl_ready("worker=%d thread_timer=%ld gone=%ld process_timer=%ld far=%ld", (int)worker_tid, (long)t_thread,
		 (long)t_gone, (long)t_proc, (long)t_far);
	wl_serve_checks("threadtimers", check);
}
