/* Mappings larger than 4 GiB of address space: a 6 GiB PROT_NONE reservation
 * never touched, and a 6 GiB MAP_NORESERVE read-write region with a few pages
 * written far apart (first page, just past 2 GiB and 4 GiB, the last page).
 * Self-check (SIGUSR1): both are still 6 GiB VMAs with their protection, the
 * written pages hold their words and an untouched page reads as zeros:
 * "PASS". */
#include "workload.h"

#include <stdint.h>
#include <sys/mman.h>

#define PAGE 4096ULL
#define GIB  (1ULL << 30)
#define SIZE (6 * GIB)

static const uint64_t offs[] = { 0, 2 * GIB + PAGE, 4 * GIB + 5 * PAGE, SIZE - PAGE };
#define NOFFS (sizeof(offs) / sizeof(offs[0]))

static uint64_t word_of(size_t k, size_t w)
{
	return (k + 1) * 0x9E3779B97F4A7C15ULL ^ w ^ 0x6269676d61707321ULL;
}

/* Length and permissions of the VMA starting at addr, from /proc/self/maps. */
static int vma_at(void *addr, unsigned long *len, char *perms)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int found = -1;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) == 3 && s == (unsigned long)addr) {
			*len = e - s;
			found = 0;
			break;
		}
	}
	if (f)
		fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	/* One reservation for both with a hole between, so they cannot merge. */
	uint8_t *base = mmap(NULL, 2 * SIZE + GIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base == MAP_FAILED)
		wl_die("mmap");
	uint8_t *none = base, *data = base + SIZE + GIB;
	if (munmap(base + SIZE, GIB) < 0)
		wl_die("munmap hole");
	if (mmap(data, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) ==
	    MAP_FAILED)
		wl_die("mmap data");
	for (size_t k = 0; k < NOFFS; k++)
		for (size_t w = 0; w < PAGE / 8; w++)
			((uint64_t *)(data + offs[k]))[w] = word_of(k, w);
	wl_ready("none=%p data=%p", (void *)none, (void *)data);
	for (;;) {
		wl_wait_check();
		char bad[256] = "", perms[8];
		unsigned long len = 0;
		if (vma_at(none, &len, perms) < 0 || len != SIZE || strncmp(perms, "---p", 4) != 0)
			snprintf(bad, sizeof(bad), "the PROT_NONE region is %lu bytes %s", len, perms);
		else if (vma_at(data, &len, perms) < 0 || len != SIZE || strncmp(perms, "rw-p", 4) != 0)
			snprintf(bad, sizeof(bad), "the data region is %lu bytes %s", len, perms);
		for (size_t k = 0; k < NOFFS && !bad[0]; k++)
			for (size_t w = 0; w < PAGE / 8 && !bad[0]; w++)
				if (((uint64_t *)(data + offs[k]))[w] != word_of(k, w))
					snprintf(bad, sizeof(bad), "page at +0x%llx word %zu changed",
						 (unsigned long long)offs[k], w);
		for (size_t w = 0; w < PAGE / 8 && !bad[0]; w++)
			if (((uint64_t *)(data + 3 * GIB))[w] != 0)
				snprintf(bad, sizeof(bad), "an untouched page is not zero");
		if (bad[0])
			wl_result("FAIL %s", bad);
		else
			wl_result("PASS");
	}
}
