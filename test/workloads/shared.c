/* A root whose child shares part of it (argv[2]): "files" (clone with CLONE_FILES: one fd
 * table, which a restore shares again) or "fs" (CLONE_FS: one cwd and root, which criu and
 * tscriu refuse to dump, leaving both as they were). On SIGUSR1: "PASS shared" while the
 * child still counts and, with "files", an fd the root opens right then is open in the
 * child too, and closed there once the root closes it. The ready line names the child. */
#define _GNU_SOURCE
#include "workload.h"

#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>

struct shared {
	atomic_ulong count;
	atomic_int probe_fd;   /* an fd the root just opened (-1: none) */
	atomic_int probe_seen; /* the child's answer: the fd if open in its table, -2 if not */
};

static struct shared *sh;
static int files_mode;
static char stack[65536] __attribute__((aligned(16)));

static int child(void *arg)
{
	(void)arg;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (;;) {
		atomic_fetch_add(&sh->count, 1);
		int fd = atomic_load(&sh->probe_fd);
		if (fd >= 0 && atomic_load(&sh->probe_seen) == -1)
			atomic_store(&sh->probe_seen, fcntl(fd, F_GETFD) >= 0 ? fd : -2);
		if (fd == -1 && atomic_load(&sh->probe_seen) != -1)
			atomic_store(&sh->probe_seen, -1);
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

/* One fd table: an fd the root opens is open in the child, and gone once closed. */
static int probe(char *why, size_t len)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return snprintf(why, len, "open /dev/null: %s", strerror(errno)), -1;
	atomic_store(&sh->probe_fd, fd);
	int seen = -1;
	for (int i = 0; i < 1000 && (seen = atomic_load(&sh->probe_seen)) == -1; i++)
		usleep(5000);
	atomic_store(&sh->probe_fd, -1);
	close(fd);
	if (seen != fd)
		return snprintf(why, len, "fd %d the root opened is %s in the child", fd,
				seen == -2 ? "not open" : "unseen"),
		       -1;
	for (int i = 0; i < 1000 && atomic_load(&sh->probe_seen) != -1; i++)
		usleep(5000);
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	files_mode = !(argc > 2 && strcmp(argv[2], "fs") == 0);
	sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		wl_die("mmap");
	atomic_store(&sh->probe_fd, -1);
	atomic_store(&sh->probe_seen, -1);
	pid_t pid = clone(child, stack + sizeof(stack), (files_mode ? CLONE_FILES : CLONE_FS) | SIGCHLD, NULL);
	if (pid < 0)
		wl_die("clone");
	while (atomic_load(&sh->count) == 0)
		usleep(1000);
	wl_ready("child=%d", pid);
	for (;;) {
		wl_wait_check();
		unsigned long before = atomic_load(&sh->count);
		for (int i = 0; i < 200 && atomic_load(&sh->count) < before + 2; i++)
			usleep(5000);
		if (atomic_load(&sh->count) < before + 2) {
			wl_result("FAIL the child stands still");
			continue;
		}
		if (files_mode) {
			char why[100];
			if (probe(why, sizeof(why)) < 0) {
				wl_result("FAIL %s", why);
				continue;
			}
		}
		wl_result("PASS shared");
	}
}
