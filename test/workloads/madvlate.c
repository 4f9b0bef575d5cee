/* A region whose VMA flags change late: asked (SIGUSR2), the task gives it MADV_DONTFORK,
 * which no line of /proc/PID/maps shows (only smaps' VmFlags, "dc"), and appends
 * "advised" to DIR/result. A test asks while a write-protect snapshot waits between its
 * smaps read ahead and its freeze: the dump must take the flag all the same. Otherwise
 * the task only sleeps, making none of the calls that change mappings. The ready line
 * names the region. Self-check (SIGUSR1): the region's data intact and its "dc" as the
 * advice left it: "PASS advised=A dc=D". */
#include "workload.h"

#include <stdint.h>
#include <sys/mman.h>

#define PAGE  4096
#define PAGES 8

static volatile sig_atomic_t advise_requested;
static int advised;
static uint8_t *region;

static void on_usr2(int sig)
{
	(void)sig;
	advise_requested = 1;
}

/* Whether the region's VmFlags hold "dc" (-1: the region is not listed). */
static int dontfork(void)
{
	char line[1024];
	if (wl_vmflags(region, line, sizeof(line)) < 0)
		return -1;
	return strstr(line, " dc") != NULL;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr2;
	if (sigaction(SIGUSR2, &sa, NULL) < 0)
		wl_die("sigaction");
	/* between two holes, so that it merges with no neighbour */
	uint8_t *area = mmap(NULL, (PAGES + 2) * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		wl_die("mmap");
	region = area + PAGE;
	if (mprotect(region, PAGES * PAGE, PROT_READ | PROT_WRITE) < 0)
		wl_die("mprotect");
	for (size_t i = 0; i < PAGES * PAGE; i++)
		region[i] = (uint8_t)(i * 13 + 5);
	wl_ready("region=%p", (void *)region);
	for (;;) {
		if (advise_requested) {
			advise_requested = 0;
			if (madvise(region, PAGES * PAGE, MADV_DONTFORK) < 0)
				wl_die("madvise");
			advised = 1;
			wl_result("advised");
		}
		if (wl_check_requested) {
			wl_check_requested = 0;
			size_t bad = 0;
			for (size_t i = 0; i < PAGES * PAGE; i++)
				bad += region[i] != (uint8_t)(i * 13 + 5);
			int dc = dontfork();
			if (bad || dc != advised)
				wl_result("FAIL advised=%d dc=%d bad=%zu", advised, dc, bad);
			else
				wl_result("PASS advised=%d dc=%d", advised, dc);
		}
		usleep(5000);
	}
}
