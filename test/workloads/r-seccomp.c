/* A task under a seccomp filter: getppid() fails with EPERM, every other syscall is
 * allowed (no_new_privs set, as an unprivileged task needs). Self-check (SIGUSR1): the
 * filter still applies ("PASS filters=N") or "FAIL <reason>". */
#include "workload.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	struct sock_filter prog[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog fprog = { sizeof(prog) / sizeof(prog[0]), prog };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		wl_die("PR_SET_NO_NEW_PRIVS");
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) < 0)
		wl_die("seccomp");
	wl_install_check_handler();
	wl_write_counter(0);
	wl_ready("");
	unsigned long long n = 0;
	for (;;) {
		wl_write_counter(++n);
		if (wl_check_requested) {
			wl_check_requested = 0;
			errno = 0;
			long r = syscall(SYS_getppid);
			char status[4096] = "";
			int fd = open("/proc/self/status", O_RDONLY);
			ssize_t len = fd >= 0 ? read(fd, status, sizeof(status) - 1) : -1;
			if (fd >= 0)
				close(fd);
			if (len > 0)
				status[len] = 0;
			const char *filters = strstr(status, "Seccomp_filters:");
			if (r != -1 || errno != EPERM)
				wl_result("FAIL getppid returned %ld errno %d: the filter is gone", r, errno);
			else if (!strstr(status, "Seccomp:\t2"))
				wl_result("FAIL not in seccomp filter mode");
			else
				wl_result("PASS filters=%d", filters ? atoi(filters + 16) : -1);
		}
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
	}
}
