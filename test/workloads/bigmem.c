/* A task with argv[2] MiB of written anonymous memory (for the dump benchmark):
 * every page holds its own index, so a dump can be checked page by page.
 * With argv[3] "work" it then keeps writing a word of a pseudo-random page (its own
 * work, which a dump may slow: bench-snapshot-work.ts) and counts in the shared file
 * DIR/progress: word 0 the writes made, word 1 the longest gap between two clock
 * readings 256 writes apart, in ns (the bench sets it to 0 to start a window). */
#include "workload.h"

#include <stdint.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static void work(uint64_t *mem, size_t len, const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/progress", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, 4096) < 0)
		wl_die("progress file");
	volatile uint64_t *st = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (st == MAP_FAILED)
		wl_die("mmap progress");
	close(fd);
	wl_ready("mem=%p mib=%zu work", (void *)mem, len >> 20);
	size_t pages = len / 4096;
	uint64_t x = 88172645463325252ULL, at = ns();
	for (;;) {
		for (int k = 0; k < 256; k++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			mem[(x % pages) * 512 + (x >> 55)]++;
		}
		st[0] += 256;
		uint64_t now = ns();
		if (now - at > st[1])
			st[1] = now - at;
		at = now;
	}
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	size_t mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 256;
	size_t len = mib << 20;
	uint64_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		wl_die("mmap");
	for (size_t i = 0; i < len / 8; i++)
		mem[i] = (i * 8 / 4096) ^ 0xB16B00B5000000ULL ^ i;
	if (argc > 3 && strcmp(argv[3], "work") == 0)
		work(mem, len, argv[1]);
	wl_ready("mem=%p mib=%zu", (void *)mem, mib);
	for (;;) {
		struct timespec ts = { 0, 50000000 };
		nanosleep(&ts, NULL);
	}
}
