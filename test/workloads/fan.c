/* A root with N-1 children (argv[2]: N, the processes in all, default 10), each
 * counting in a slot of one MAP_SHARED anonymous page made before the forks. On
 * SIGUSR1 the root waits until every process has counted on twice: "PASS fan=N" (or
 * "FAIL why"). Children die with the root (PR_SET_PDEATHSIG). The ready line names the
 * children: "pids=P1,P2,…". With argv[3] "uid=N" the children drop to uid and gid N (as
 * nginx's workers run as another user than their root master) and the check wants them
 * still there. With argv[3] "churn" a thread of the root forks children that exit at once
 * and reaps them, without a pause, so that a dump finds children being born and dying
 * (the check then also wants that thread to churn on). For the tree benchmark and the
 * partial-failure tests. */
#include "workload.h"

#include <pthread.h>
#include <sys/wait.h>

#include <stdatomic.h>
#include <sys/mman.h>
#include <grp.h>
#include <sys/prctl.h>
#include <time.h>

#define MAXN 512

static atomic_ulong *counts;
static atomic_ulong churned;

static void *churn(void *arg)
{
	(void)arg;
	for (;;) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(3);
		if (pid > 0 && waitpid(pid, NULL, 0) == pid)
			atomic_fetch_add(&churned, 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	int n = argc > 2 ? atoi(argv[2]) : 10;
	int uid = argc > 3 && strncmp(argv[3], "uid=", 4) == 0 ? atoi(argv[3] + 4) : -1;
	int churning = argc > 3 && strcmp(argv[3], "churn") == 0;
	if (n < 1 || n > MAXN)
		n = 10;
	wl_install_check_handler();
	counts = mmap(NULL, MAXN * sizeof(*counts), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (counts == MAP_FAILED)
		wl_die("mmap");
	static pid_t pids[MAXN];
	for (int i = 1; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0)
			wl_die("fork");
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (uid >= 0 &&
			    (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0))
				wl_die("setresuid");
			/* a uid change clears the parent-death signal */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (;;) {
				atomic_fetch_add(&counts[i], 1);
				struct timespec ts = { 0, 20 * 1000 * 1000 };
				nanosleep(&ts, NULL);
			}
		}
		pids[i] = pid;
	}
	for (int i = 1; i < n; i++)
		while (atomic_load(&counts[i]) == 0)
			usleep(1000);
	if (churning) {
		pthread_t th;
		if (pthread_create(&th, NULL, churn, NULL) != 0)
			wl_die("pthread_create");
	}
	static char list[MAXN * 12];
	for (int i = 1; i < n; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%d", i > 1 ? "," : "", pids[i]);
	wl_ready("fan=%d pids=%s", n, list);
	for (;;) {
		wl_wait_check();
		unsigned long before[MAXN];
		for (int i = 1; i < n; i++)
			before[i] = atomic_load(&counts[i]);
		int stuck = -1;
		for (int tries = 0; tries < 500; tries++) {
			stuck = -1;
			for (int i = 1; i < n && stuck < 0; i++)
				if (atomic_load(&counts[i]) < before[i] + 2)
					stuck = i;
			if (stuck < 0)
				break;
			usleep(10000);
		}
		unsigned long churned_before = atomic_load(&churned);
		for (int tries = 0; churning && tries < 1000 && atomic_load(&churned) == churned_before; tries++)
			usleep(10000);
		int wrong = -1;
		for (int i = 1; i < n && uid >= 0 && wrong < 0; i++) {
			char path[64], line[256];
			snprintf(path, sizeof(path), "/proc/%d/status", pids[i]);
			FILE *f = fopen(path, "re");
			int real = -1, eff = -1;
			while (f && fgets(line, sizeof(line), f))
				if (sscanf(line, "Uid: %d %d", &real, &eff) == 2)
					break;
			if (f)
				fclose(f);
			if (real != uid || eff != uid)
				wrong = i;
		}
		if (stuck >= 0)
			wl_result("FAIL child %d (pid %d) stands still", stuck, pids[stuck]);
		else if (churning && atomic_load(&churned) == churned_before)
			wl_result("FAIL the churning thread stands still");
		else if (wrong >= 0)
			wl_result("FAIL child %d (pid %d) is not uid %d", wrong, pids[wrong], uid);
		else
			wl_result("PASS fan=%d", n);
	}
}
