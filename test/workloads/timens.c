/* unshare(CLONE_NEWTIME) without entering the new namespace: only children
 * made from now on would live in it, and /proc/self/ns/time_for_children
 * differs from /proc/self/ns/time. A dump must refuse this task (no image
 * records such a namespace) and leave it running. Self-check (SIGUSR1): still
 * the same pending namespace, "PASS". */
#include "workload.h"

#include <sched.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static void ns_of(const char *name, char *out, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/ns/%s", name);
	ssize_t n = readlink(path, out, len - 1);
	if (n < 0)
		wl_die("readlink ns");
	out[n] = 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	char own[64], children[64];
	ns_of("time", own, sizeof(own));
	if (unshare(CLONE_NEWTIME) < 0)
		wl_die("unshare(CLONE_NEWTIME)");
	ns_of("time_for_children", children, sizeof(children));
	wl_ready("time=%s children=%s", own, children);
	for (;;) {
		wl_wait_check();
		char now_own[64], now_children[64];
		ns_of("time", now_own, sizeof(now_own));
		ns_of("time_for_children", now_children, sizeof(now_children));
		if (strcmp(now_own, own) != 0 || strcmp(now_children, children) != 0)
			wl_result("FAIL time %s, for children %s; were %s, %s", now_own, now_children, own, children);
		else if (strcmp(own, children) == 0)
			wl_result("FAIL no pending time namespace");
		else
			wl_result("PASS");
	}
}
