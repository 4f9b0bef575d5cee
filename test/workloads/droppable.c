/* A MAP_DROPPABLE mapping (Linux 6.11+: private anonymous memory the kernel may empty
 * under pressure, "dp" in smaps' VmFlags) between two plain private ones holding a
 * pattern. Ready line: "droppable=ADDR" or "droppable=unsupported errno=N" when the kernel
 * refuses the flag. Self-check (SIGUSR1): the mapping is still droppable and usable, and
 * its neighbours still plain and holding their pattern ("PASS droppable") or
 * "FAIL droppable: why". Its own contents are not checked: the kernel may drop them. */
#include "workload.h"

#include <sys/mman.h>

#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif

#define PAGE  4096
#define PAGES 4

static char *below, *drop, *above;

/* The VmFlags line of the VMA starting at addr, into out; -1 if there is none. */
static int vmflags(void *addr, char *out, size_t len)
{
	char smaps[4096];
	const char *v;
	if (wl_smaps_of(addr, smaps, sizeof(smaps)) < 0 || !(v = strstr(smaps, "\nVmFlags:")))
		return -1;
	v += strlen("\nVmFlags:");
	size_t n = strcspn(v, "\n");
	n = n < len - 1 ? n : len - 1;
	memcpy(out, v, n);
	out[n] = 0;
	return 0;
}

static int has_flag(const char *flags, const char *flag)
{
	char padded[520], want[8];
	snprintf(padded, sizeof(padded), " %s ", flags);
	snprintf(want, sizeof(want), " %s ", flag);
	return strstr(padded, want) != NULL;
}

static int check(void)
{
	char flags[480];
	if (vmflags(drop, flags, sizeof(flags)) < 0)
		return wl_fail("no VMA starts at %p any more", (void *)drop);
	if (!has_flag(flags, "dp"))
		return wl_fail("VmFlags of %p are%s, no dp", (void *)drop, flags);
	for (char **p = (char *[]){ below, above, NULL }; *p; p++) {
		if (vmflags(*p, flags, sizeof(flags)) < 0)
			return wl_fail("no VMA starts at %p any more", (void *)*p);
		if (has_flag(flags, "dp"))
			return wl_fail("the plain neighbour %p became droppable:%s", (void *)*p, flags);
		for (int i = 0; i < PAGES * PAGE; i++)
			if ((*p)[i] != (char)(i * 7 + (*p == above)))
				return wl_fail("byte %d of %p is %d", i, (void *)*p, (*p)[i]);
	}
	/* usable as before: written and read back (nothing holds it long enough to be dropped
	 * unless the machine is under memory pressure right now) */
	memset(drop, 0x5a, PAGES * PAGE);
	if (drop[0] != 0x5a && drop[0] != 0)
		return wl_fail("droppable byte 0 is %d after a write", drop[0]);
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	/* three adjacent places, so that the kernel would merge them if their flags agreed */
	char *all = mmap(NULL, 3 * PAGES * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (all == MAP_FAILED)
		wl_die("mmap");
	below = all;
	drop = all + PAGES * PAGE;
	above = all + 2 * PAGES * PAGE;
	if (mmap(drop, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_DROPPABLE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
	    MAP_FAILED) {
		wl_ready("droppable=unsupported errno=%d", errno);
		for (;;)
			pause();
	}
	for (char **p = (char *[]){ below, above, NULL }; *p; p++) {
		if (mmap(*p, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
		    MAP_FAILED)
			wl_die("mmap");
		for (int i = 0; i < PAGES * PAGE; i++)
			(*p)[i] = (char)(i * 7 + (*p == above));
	}
	memset(drop, 0x5a, PAGES * PAGE);
	wl_install_check_handler();
	wl_ready("droppable=%p", (void *)drop);
	wl_serve_checks("droppable", check);
}
