/* A task with argv[2] MiB of written anonymous memory (for the dump benchmark):
 * every page holds its own index, so a dump can be checked page by page. */
#include "workload.h"

#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

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
	wl_ready("mem=%p mib=%zu", (void *)mem, mib);
	for (;;) {
		struct timespec ts = { 0, 50000000 };
		nanosleep(&ts, NULL);
	}
}
