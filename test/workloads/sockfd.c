/* A task holding a unix socketpair (fds 5 and 6), which this dump refuses: the
 * dump must fail with "unsupported fd 5: socket" and leave the task running.
 * Self-check (SIGUSR1): the socket still carries a byte ("PASS"). */
#include "workload.h"

#include <sys/socket.h>
#include <time.h>

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		wl_die("socketpair");
	if (dup2(sv[0], 5) < 0 || dup2(sv[1], 6) < 0)
		wl_die("dup2");
	close(sv[0]);
	close(sv[1]);
	wl_install_check_handler();
	wl_write_counter(0);
	wl_ready("sock=5");
	unsigned long long n = 0;
	for (;;) {
		wl_write_counter(++n);
		if (wl_check_requested) {
			wl_check_requested = 0;
			char c = 0;
			if (write(5, "x", 1) == 1 && read(6, &c, 1) == 1 && c == 'x')
				wl_result("PASS count=%llu", n);
			else
				wl_result("FAIL socket");
		}
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
	}
}
