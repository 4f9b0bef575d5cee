/* Where the processes of a tree workload sit: each notes its pid, parent, group and session
 * in a slot of a MAP_SHARED region, again and again, so that the root can check that every
 * one still runs (its count goes on) and sits where it sat (daemon.c, sessions.c). */
#ifndef TSCRIU_SLOTS_H
#define TSCRIU_SLOTS_H

#include "workload.h"

#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>

struct wl_slot {
	atomic_ulong count;
	atomic_int pid, ppid, pgid, sid;
};

/* Where a process must sit: its slot's index, its parent, group and session. */
struct wl_where {
	int who, ppid, pgid, sid;
};

/* The root of a tree workload: a child subreaper (orphans of the tree come to it), with a
 * page of slots. */
static inline struct wl_slot *wl_slots_root(void)
{
	wl_install_check_handler();
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		wl_die("PR_SET_CHILD_SUBREAPER");
	void *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		wl_die("mmap");
	return mem;
}

/* Nothing of the tree died unreaped under the root (a helper of a restore, say): 0, else -1. */
static inline int wl_nothing_to_reap(char *why, size_t len)
{
	pid_t left = waitpid(-1, NULL, WNOHANG);
	if (left != 0)
		return snprintf(why, len, "P had a child to reap (%d)", left), -1;
	return 0;
}

static inline void wl_tick(struct wl_slot *s)
{
	atomic_store(&s->pid, getpid());
	atomic_store(&s->ppid, getppid());
	atomic_store(&s->pgid, getpgid(0));
	atomic_store(&s->sid, getsid(0));
	atomic_fetch_add(&s->count, 1);
}

static inline void wl_tick_forever(struct wl_slot *s)
{
	for (;;) {
		wl_tick(s);
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

/* Every one of `n` slots counts on by two within 10 s (slot `self`, the caller's, is ticked
 * meanwhile), and each of `want` sits where it must: 0, else -1 with why in `why`. */
static inline int wl_slots_check(struct wl_slot *slots, int n, int self, const char *const *names,
				 const struct wl_where *want, size_t nwant, char *why, size_t len)
{
	unsigned long before[n];
	for (int i = 0; i < n; i++)
		before[i] = atomic_load(&slots[i].count);
	for (int tries = 0; tries < 1000; tries++) {
		int all = 1;
		wl_tick(&slots[self]);
		for (int i = 0; i < n; i++)
			if (atomic_load(&slots[i].count) < before[i] + 2)
				all = 0;
		if (all)
			break;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	for (int i = 0; i < n; i++)
		if (atomic_load(&slots[i].count) < before[i] + 2)
			return snprintf(why, len, "%s stands still", names[i]), -1;
	for (size_t i = 0; i < nwant; i++) {
		struct wl_slot *x = &slots[want[i].who];
		if (x->ppid != want[i].ppid || x->pgid != want[i].pgid || x->sid != want[i].sid)
			return snprintf(why, len, "%s: ppid %d pgid %d sid %d, want %d %d %d", names[want[i].who],
					x->ppid, x->pgid, x->sid, want[i].ppid, want[i].pgid, want[i].sid),
			       -1;
	}
	return 0;
}

#endif
