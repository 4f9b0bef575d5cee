/* Sits in one long nanosleep (the raw syscall, so orig_rax is 35). A sleep
 * that ends early without SIGUSR1 is a FAIL (e.g. a broken syscall restart
 * after the tracer ran code in us); SIGUSR1 ends it on purpose:
 * "PASS slept=<ms>". */
#include "workload.h"

#include <sys/syscall.h>
#include <time.h>

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	wl_ready("");
	for (;;) {
		struct timespec req = { 3600, 0 }, rem;
		long long start = now_ms();
		long r = syscall(SYS_nanosleep, &req, &rem);
		int err = errno;
		if (r == 0)
			continue;
		if (err == EINTR && wl_check_requested) {
			wl_check_requested = 0;
			wl_result("PASS slept=%lld", now_ms() - start);
		} else {
			wl_result("FAIL nanosleep returned %ld errno %d without SIGUSR1", r, err);
		}
	}
}
