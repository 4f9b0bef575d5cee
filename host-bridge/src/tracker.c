/* tscriu_tracker: holds the userfaultfds that track a dumped tree's writes between the
 * passes of an incremental dump (uffd_track.c), so that the tracking outlives the
 * tscriu process that started it. Closing the last copy of a userfaultfd unregisters
 * its VMAs and drops their write-protection: this program is that last copy.
 *
 *   tscriu_tracker SOURCE_PID TASK_PID:FD [TASK_PID:FD ...]
 *
 * Takes each FD out of SOURCE_PID (pidfd_getfd), then prints "TASK_PID FD" with the
 * number the fd has here, one line each, then "ready". A later pass takes the fds it
 * needs from here the same way. Each fd is closed when its task exits; the program
 * exits when none is left, or when it is killed (the tracking ends with it). A step
 * that fails prints "error STEP ERRNO" and exits 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/pidfd.h>
#include <unistd.h>

#define MAX_TASKS 4096

static int fail(const char *step)
{
	printf("error %s %d\n", step, errno);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc - 2 > MAX_TASKS) {
		fprintf(stderr, "usage: tscriu_tracker SOURCE_PID TASK_PID:FD...\n");
		return 2;
	}
	static struct pollfd tasks[MAX_TASKS];
	static int uffds[MAX_TASKS];
	int n = 0;
	int src = pidfd_open(atoi(argv[1]), 0);
	if (src < 0)
		return fail("pidfd_open(source)");
	for (int i = 2; i < argc; i++) {
		int pid = 0, fd = -1;
		if (sscanf(argv[i], "%d:%d", &pid, &fd) != 2 || pid <= 0 || fd < 0) {
			errno = EINVAL;
			return fail("argument");
		}
		int task = pidfd_open(pid, 0);
		if (task < 0) {
			if (errno == ESRCH)
				continue; /* gone already: nothing to track */
			return fail("pidfd_open(task)");
		}
		int uffd = pidfd_getfd(src, fd, 0);
		if (uffd < 0)
			return fail("pidfd_getfd");
		tasks[n] = (struct pollfd){ .fd = task, .events = POLLIN };
		uffds[n++] = uffd;
		printf("%d %d\n", pid, uffd);
	}
	close(src);
	printf("ready\n");
	if (fflush(stdout) != 0)
		return 1;
	fclose(stdout);
	while (n > 0) {
		if (poll(tasks, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		for (int i = 0; i < n;) {
			if (tasks[i].revents == 0) {
				i++;
				continue;
			}
			close(tasks[i].fd);
			close(uffds[i]);
			tasks[i] = tasks[--n];
			uffds[i] = uffds[n];
		}
	}
	return 0;
}
