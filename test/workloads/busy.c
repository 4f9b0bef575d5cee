/* A busy loop that makes no syscalls: it only increments a counter in memory
 * (address printed), so a stop always lands in user code (orig_rax = -1).
 * Self-check (SIGUSR1): "PASS count=N" -- the flag is polled in the loop. */
#include "workload.h"

static volatile unsigned long long counter;

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	wl_ready("counter=%p", (void *)&counter);
	for (;;) {
		counter++;
		if (wl_check_requested) {
			wl_check_requested = 0;
			wl_result("PASS count=%llu", counter);
		}
	}
}
