/* argv[2] (default 10000) private anonymous mappings of one page each, with a
 * hole after each so that none merge, every page filled with words derived from
 * its index; every third made read-only and every seventh PROT_NONE afterwards,
 * so the VMAs differ in protection too. Self-check (SIGUSR1): every mapping is
 * still there with its protection (/proc/self/maps) and its words:
 * "PASS maps=N". */
#include "workload.h"

#include <stdint.h>
#include <sys/mman.h>

#define PAGE 4096

static uint64_t word_of(size_t i, size_t w)
{
	return (i + 1) * 0x9E3779B97F4A7C15ULL ^ (w << 32) ^ 0x6d616e796d617073ULL;
}

static int prot_of(size_t i)
{
	return i % 7 == 0 ? PROT_NONE : i % 3 == 0 ? PROT_READ : PROT_READ | PROT_WRITE;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 10000;
	uint8_t *base = mmap(NULL, 2 * n * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		wl_die("mmap reserve");
	for (size_t i = 0; i < n; i++) {
		uint64_t *p = (uint64_t *)(base + 2 * i * PAGE);
		if (munmap(base + (2 * i + 1) * PAGE, PAGE) < 0)
			wl_die("munmap hole");
		if (mprotect(p, PAGE, PROT_READ | PROT_WRITE) < 0)
			wl_die("mprotect");
		for (size_t w = 0; w < PAGE / 8; w++)
			p[w] = word_of(i, w);
		if (prot_of(i) != (PROT_READ | PROT_WRITE) && mprotect(p, PAGE, prot_of(i)) < 0)
			wl_die("mprotect final");
	}
	wl_ready("maps=%zu base=%p", n, (void *)base);
	for (;;) {
		wl_wait_check();
		char bad[256] = "";
		/* Protection and presence from maps: walk it once, in address order. */
		FILE *f = fopen("/proc/self/maps", "re");
		char line[512];
		size_t next = 0;
		while (f && fgets(line, sizeof(line), f) && next < n && !bad[0]) {
			unsigned long s, e;
			char perms[8];
			if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) != 3)
				continue;
			uint8_t *want = base + 2 * next * PAGE;
			if ((uint8_t *)s > want)
				snprintf(bad, sizeof(bad), "mapping %zu at %p is gone", next, (void *)want);
			else if ((uint8_t *)s == want) {
				int prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0);
				if (e - s != PAGE)
					snprintf(bad, sizeof(bad), "mapping %zu is %lu bytes", next, e - s);
				else if (prot != prot_of(next))
					snprintf(bad, sizeof(bad), "mapping %zu has %s", next, perms);
				next++;
			}
		}
		if (f)
			fclose(f);
		if (!bad[0] && next < n)
			snprintf(bad, sizeof(bad), "only %zu of %zu mappings found", next, n);
		for (size_t i = 0; i < n && !bad[0]; i++) {
			uint64_t *p = (uint64_t *)(base + 2 * i * PAGE);
			if (prot_of(i) == PROT_NONE && mprotect(p, PAGE, PROT_READ) < 0)
				snprintf(bad, sizeof(bad), "mprotect %zu: %s", i, strerror(errno));
			for (size_t w = 0; w < PAGE / 8 && !bad[0]; w++)
				if (p[w] != word_of(i, w))
					snprintf(bad, sizeof(bad), "mapping %zu word %zu changed", i, w);
			if (prot_of(i) == PROT_NONE)
				mprotect(p, PAGE, PROT_NONE);
		}
		if (bad[0])
			wl_result("FAIL %s", bad);
		else
			wl_result("PASS maps=%zu", n);
	}
}
