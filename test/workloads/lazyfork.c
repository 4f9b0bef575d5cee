/* Memory that moves, forks and is given back, for lazy restores: argv[2] MiB in region
 * A and 8 MiB in region B, each word derived from its page's index. On SIGUSR1 (a test
 * sends it as soon as a lazy restore returns, while pages are still missing):
 *   - B is moved with mremap(MREMAP_FIXED) to a fresh address and checked there;
 *   - a forked child checks A and exits with the result (its pages come from the
 *     daemon too: the fork hands it a userfaultfd of its own);
 *   - the parent checks A;
 *   - one MiB of A is given back (MADV_DONTNEED): it must read zeros, and is written
 *     again for the next check.
 * One PASS or FAIL line per check. */
#include "workload.h"

#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define WORDS (4096 / 8)

static inline uint64_t word(uint64_t region, uint64_t page, uint64_t j)
{
	return (region << 56) ^ (page * 0x9E3779B97F4A7C15ULL) ^ (j * 0xC2B2AE3D27D4EB4FULL);
}

static void fill(uint64_t *m, uint64_t region, size_t from, size_t to)
{
	for (size_t p = from; p < to; p++)
		for (size_t j = 0; j < WORDS; j++)
			m[p * WORDS + j] = word(region, p, j);
}

/* the first page of [0, pages) that is wrong, or -1 */
static long check(const uint64_t *m, uint64_t region, size_t pages)
{
	for (size_t p = 0; p < pages; p++)
		for (size_t j = 0; j < WORDS; j++)
			if (m[p * WORDS + j] != word(region, p, j))
				return (long)p;
	return -1;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	wl_report_fatal_signals();
	size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 64;
	size_t apages = (mib << 20) / 4096, bpages = (8 << 20) / 4096;
	uint64_t *a = mmap(NULL, apages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t *b = mmap(NULL, bpages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED)
		wl_die("mmap");
	fill(a, 1, 0, apages);
	fill(b, 2, 0, bpages);
	wl_ready("a=%p b=%p", (void *)a, (void *)b);
	for (;;) {
		wl_wait_check();
		char why[256] = "";
		/* B moves: a placeholder takes a fresh address, B is moved over it */
		void *to = mmap(NULL, bpages * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (to == MAP_FAILED)
			wl_die("mmap");
		void *moved = mremap(b, bpages * 4096, bpages * 4096, MREMAP_MAYMOVE | MREMAP_FIXED, to);
		if (moved == MAP_FAILED)
			wl_die("mremap");
		b = moved;
		long bad = check(b, 2, bpages);
		if (bad >= 0)
			snprintf(why, sizeof(why), "B moved to %p: page %ld differs", (void *)b, bad);
		pid_t child = fork();
		if (child < 0)
			wl_die("fork");
		if (child == 0) {
			long cbad = check(a, 1, apages);
			if (cbad >= 0)
				wl_result("FAIL the forked child: A's page %ld at %p holds 0x%llx", cbad,
					  (void *)(a + cbad * WORDS), (unsigned long long)a[cbad * WORDS]);
			_exit(cbad >= 0 ? 1 : 0);
		}
		bad = check(a, 1, apages);
		if (bad >= 0 && !why[0])
			snprintf(why, sizeof(why), "A: page %ld differs", bad);
		int st;
		if (waitpid(child, &st, 0) < 0)
			wl_die("waitpid");
		if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) && !why[0])
			snprintf(why, sizeof(why), "the forked child saw A differ (status 0x%x)", st);
		size_t from = apages / 2, n = (1 << 20) / 4096;
		if (madvise(a + from * WORDS, n * 4096, MADV_DONTNEED) < 0)
			wl_die("madvise");
		for (size_t i = 0; i < n * WORDS && !why[0]; i++)
			if (a[from * WORDS + i] != 0)
				snprintf(why, sizeof(why), "A after MADV_DONTNEED: word %zu is not zero", i);
		fill(a, 1, from, from + n);
		if (why[0])
			wl_result("FAIL %s", why);
		else
			wl_result("PASS a=%zu b=%zu pages", apages, bpages);
	}
}
