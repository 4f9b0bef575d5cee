/* Sets its own audit login uid (/proc/self/loginuid, which only the task itself
 * may write, with CAP_AUDIT_CONTROL) to the uid given as argv[2] (default 3).
 * Self-check (SIGUSR1): the login uid is still that: "PASS loginuid=N". When
 * the kernel refuses the write (audit's loginuid_immutable), the ready line says
 * "loginuid=unsettable". */
#include "workload.h"

static long read_loginuid(void)
{
	char buf[32] = "";
	int fd = open("/proc/self/loginuid", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtol(buf, NULL, 10) : -1;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	const char *want = argc > 2 ? argv[2] : "3";
	int fd = open("/proc/self/loginuid", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		wl_die("open /proc/self/loginuid");
	if (write(fd, want, strlen(want)) < 0) {
		wl_ready("loginuid=unsettable errno=%d", errno);
	} else {
		wl_ready("loginuid=%ld", read_loginuid());
	}
	close(fd);
	long set = read_loginuid();
	for (;;) {
		wl_wait_check();
		long now = read_loginuid();
		if (now != set)
			wl_result("FAIL loginuid %ld, was %ld", now, set);
		else
			wl_result("PASS loginuid=%ld", now);
	}
}
