/* A task that cannot stop for a while: it counts (DIR/counter) until SIGUSR2, then
 * vfork()s a child that sleeps argv[2] seconds (default 4) before it exits. Until then
 * the parent waits for its vfork to complete, where no signal but a fatal one reaches it:
 * a freeze cannot stop it (a dump's --timeout shows). Then it counts on. SIGUSR1:
 * "PASS count=N". */
#include "workload.h"

#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

static volatile sig_atomic_t vfork_requested;

static void on_usr2(int sig)
{
	(void)sig;
	vfork_requested = 1;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	int secs = argc > 2 ? atoi(argv[2]) : 4;
	wl_install_check_handler();
	signal(SIGUSR2, on_usr2);
	unsigned long long n = 0;
	wl_write_counter(n);
	wl_ready("secs=%d", secs);
	for (;;) {
		if (vfork_requested) {
			vfork_requested = 0;
			pid_t pid = vfork();
			if (pid == 0) {
				/* only syscalls here: the parent's memory is ours until _exit */
				struct timespec ts = { secs, 0 };
				syscall(SYS_nanosleep, &ts, NULL);
				syscall(SYS_exit, 0);
			}
			if (pid > 0)
				waitpid(pid, NULL, 0);
		}
		if (wl_check_requested) {
			wl_check_requested = 0;
			wl_result("PASS count=%llu", n);
		}
		wl_write_counter(++n);
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}
