/* One private anonymous region per madvise advice that the kernel keeps on the
 * VMA (MADV_DONTFORK, DONTDUMP, WIPEONFORK, HUGEPAGE, NOHUGEPAGE, MERGEABLE,
 * RANDOM, SEQUENTIAL), each between guard holes so that no two merge, plus one
 * with three advices at once. Advice the kernel refuses (no THP, no KSM) is
 * left out. The VmFlags of every region are read from /proc/self/smaps once set
 * up; the self-check (SIGUSR1) reads them again and wants the same, each
 * region's data intact too: "PASS regions=N flags=...". The ready line names
 * the flags that had to be there (dc dd wf, always available). */
#include "workload.h"

#include <stdint.h>
#include <sys/mman.h>

#define PAGE  4096
#define PAGES 4
#define MAXR  16

struct region {
	const char *name;
	int advice[3];
	int next_to_previous; /* placed right after the previous region, no hole */
	uint8_t *at;
	char flags[256];
};

static struct region regions[] = {
	{ .name = "dontfork", .advice = { MADV_DONTFORK, -1, -1 } },
	{ .name = "dontdump", .advice = { MADV_DONTDUMP, -1, -1 } },
	{ .name = "wipeonfork", .advice = { MADV_WIPEONFORK, -1, -1 } },
	{ .name = "hugepage", .advice = { MADV_HUGEPAGE, -1, -1 } },
	{ .name = "nohugepage", .advice = { MADV_NOHUGEPAGE, -1, -1 } },
	{ .name = "mergeable", .advice = { MADV_MERGEABLE, -1, -1 } },
	{ .name = "random", .advice = { MADV_RANDOM, -1, -1 } },
	{ .name = "sequential", .advice = { MADV_SEQUENTIAL, -1, -1 } },
	{ .name = "three", .advice = { MADV_DONTFORK, MADV_DONTDUMP, MADV_WIPEONFORK } },
	/* neighbours that differ only in their advice: one VMA each */
	{ .name = "plain-a", .advice = { -1, -1, -1 } },
	{ .name = "next-dontdump", .advice = { MADV_DONTDUMP, -1, -1 }, .next_to_previous = 1 },
	{ .name = "next-wipeonfork", .advice = { MADV_WIPEONFORK, -1, -1 }, .next_to_previous = 1 },
	{ .name = "next-dontfork", .advice = { MADV_DONTFORK, -1, -1 }, .next_to_previous = 1 },
	{ .name = "plain-b", .advice = { -1, -1, -1 }, .next_to_previous = 1 },
};
#define NREG (sizeof(regions) / sizeof(regions[0]))

/* The VmFlags advice tokens of the VMA starting at addr, sorted as the kernel
 * prints them, only the ones madvise sets (others, like "ac" or "mr", differ
 * with the kernel config and are not ours to check). */
static int vmflags_of(uint8_t *addr, char *out, size_t outlen)
{
	static const char *ours[] = { "dc", "dd", "wf", "hg", "nh", "mg", "rr", "sr" };
	char line[1024];
	if (wl_vmflags(addr, line, sizeof(line)) < 0)
		return -1;
	out[0] = 0;
	for (char *tok = strtok(line, " \n"); tok; tok = strtok(NULL, " \n"))
		for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
			if (strcmp(tok, ours[i]) == 0 && strlen(out) + 4 < outlen) {
				strcat(out, tok);
				strcat(out, ",");
			}
	return 0;
}

static uint8_t byte_of(size_t r, size_t i)
{
	return (uint8_t)(r * 31 + i * 7 + 1);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	/* Guard holes: reserve, then leave every other stretch unmapped. */
	uint8_t *base = mmap(NULL, (2 * NREG + 1) * PAGES * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		wl_die("mmap reserve");
	munmap(base, (2 * NREG + 1) * PAGES * PAGE);
	uint8_t *at = base;
	for (size_t r = 0; r < NREG; r++) {
		struct region *g = &regions[r];
		at += (g->next_to_previous ? 1 : 2) * PAGES * PAGE;
		g->at = mmap(at, PAGES * PAGE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (g->at == MAP_FAILED)
			wl_die("mmap region");
		for (int a = 0; a < 3 && g->advice[a] >= 0; a++)
			madvise(g->at, PAGES * PAGE, g->advice[a]); /* refused ones just do not show */
		for (size_t i = 0; i < PAGES * PAGE; i++)
			g->at[i] = byte_of(r, i);
		if (vmflags_of(g->at, g->flags, sizeof(g->flags)) < 0)
			wl_die("smaps");
	}
	wl_ready("dontfork=%s dontdump=%s wipeonfork=%s three=%s", regions[0].flags, regions[1].flags, regions[2].flags,
		 regions[8].flags);
	for (;;) {
		wl_wait_check();
		char bad[512] = "", all[1024] = "";
		for (size_t r = 0; r < NREG && !bad[0]; r++) {
			char now[256];
			if (vmflags_of(regions[r].at, now, sizeof(now)) < 0)
				snprintf(bad, sizeof(bad), "%s: no VMA at %p", regions[r].name, (void *)regions[r].at);
			else if (strcmp(now, regions[r].flags) != 0)
				snprintf(bad, sizeof(bad), "%s: VmFlags %s, was %s", regions[r].name, now,
					 regions[r].flags);
			for (size_t i = 0; i < PAGES * PAGE && !bad[0]; i++)
				if (regions[r].at[i] != byte_of(r, i))
					snprintf(bad, sizeof(bad), "%s: byte %zu changed", regions[r].name, i);
			snprintf(all + strlen(all), sizeof(all) - strlen(all), "%s:%s ", regions[r].name,
				 regions[r].flags);
		}
		if (bad[0])
			wl_result("FAIL %s", bad);
		else
			wl_result("PASS regions=%zu flags=%s", NREG, all);
	}
}
