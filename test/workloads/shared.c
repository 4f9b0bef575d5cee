/* A root whose child shares something a restore cannot share again yet (argv[2]):
 * "files" (clone with CLONE_FILES: one fd table) or "fs" (CLONE_FS: one cwd and root).
 * Both keep running; the dump must refuse them by name and leave both as they were. On
 * SIGUSR1: "PASS shared" while the child still counts. The ready line names the child. */
#define _GNU_SOURCE
#include "workload.h"

#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>

static atomic_ulong *count;
static char stack[65536] __attribute__((aligned(16)));

static int child(void *arg)
{
	(void)arg;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (;;) {
		atomic_fetch_add(count, 1);
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	int flags = argc > 2 && strcmp(argv[2], "fs") == 0 ? CLONE_FS : CLONE_FILES;
	count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (count == MAP_FAILED)
		wl_die("mmap");
	pid_t pid = clone(child, stack + sizeof(stack), flags | SIGCHLD, NULL);
	if (pid < 0)
		wl_die("clone");
	while (atomic_load(count) == 0)
		usleep(1000);
	wl_ready("child=%d", pid);
	for (;;) {
		wl_wait_check();
		unsigned long before = atomic_load(count);
		for (int i = 0; i < 200 && atomic_load(count) < before + 2; i++)
			usleep(5000);
		if (atomic_load(count) < before + 2)
			wl_result("FAIL the child stands still");
		else
			wl_result("PASS shared");
	}
}
