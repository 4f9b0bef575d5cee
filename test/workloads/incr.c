/* A task that keeps writing its memory, for incremental dumps: argv[2] MiB of pages,
 * each filled from (its index, its version); every 10 ms it writes argv[3] per mille of
 * them (default 1: 1 % every 100 ms) with their next version. The versions live in a
 * table of their own, written before the page. On SIGUSR1 it checks that every page
 * holds exactly the version the table says (the page being written at the stop is the
 * one it cannot judge): a page older than its version is a stale page from a parent
 * dump, a newer one is from after the freeze, a mixed one is torn. With argv[4] "discard"
 * it never sleeps and gives each page back (MADV_DONTNEED) before writing it again. */
#include "workload.h"

#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

#define WORDS	  (4096 / 8)
#define barrier() __asm__ volatile("" ::: "memory")

static inline uint64_t word(uint64_t page, uint64_t version, uint64_t j)
{
	return (page * 0x9E3779B97F4A7C15ULL) ^ (version * 0xC2B2AE3D27D4EB4FULL) ^ (j * 0x165667B19E3779F9ULL);
}

static uint64_t rng = 0x2545F4914F6CDD1DULL;
static inline uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
	size_t permille = argc > 3 ? strtoul(argv[3], NULL, 10) : 1;
	int discard = argc > 4 && strcmp(argv[4], "discard") == 0;
	size_t pages = (mib << 20) / 4096;
	uint64_t *mem = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint32_t *ver = mmap(NULL, pages * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || ver == MAP_FAILED)
		wl_die("mmap");
	/* the page being written, or -1: the one page a stop may catch half-written */
	static volatile int64_t cur = -1;
	static volatile uint64_t writes;
	for (size_t p = 0; p < pages; p++) {
		ver[p] = 1;
		for (size_t j = 0; j < WORDS; j++)
			mem[p * WORDS + j] = word(p, 1, j);
	}
	wl_ready("mem=%p pages=%zu", (void *)mem, pages);
	size_t per_tick = pages * permille / 1000;
	if (per_tick == 0)
		per_tick = 1;
	for (;;) {
		if (wl_check_requested) {
			wl_check_requested = 0;
			size_t bad = 0, first = 0;
			for (size_t p = 0; p < pages; p++) {
				if ((int64_t)p == cur)
					continue;
				for (size_t j = 0; j < WORDS; j++) {
					if (mem[p * WORDS + j] != word(p, ver[p], j)) {
						if (bad++ == 0)
							first = p;
						break;
					}
				}
			}
			if (bad)
				wl_result("FAIL %zu pages differ from their version, first %zu (version %u)", bad,
					  first, ver[first]);
			else
				wl_result("PASS pages=%zu writes=%llu", pages, (unsigned long long)writes);
		}
		for (size_t k = 0; k < per_tick; k++) {
			size_t p = next() % pages;
			cur = (int64_t)p;
			barrier();
			uint32_t v = ++ver[p];
			barrier();
			if (discard && madvise(&mem[p * WORDS], 4096, MADV_DONTNEED) < 0)
				wl_die("madvise");
			for (size_t j = 0; j < WORDS; j++)
				mem[p * WORDS + j] = word(p, v, j);
			barrier();
			cur = -1;
			writes++;
		}
		struct timespec ts = { 0, 10000000 };
		if (!discard)
			nanosleep(&ts, NULL);
	}
}
