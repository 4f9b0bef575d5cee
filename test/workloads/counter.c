/* A counter loop with known memory: PATTERN_PAGES pages of a known pattern, one
 * PROT_NONE page ("secret") holding the inverted pattern, and one "inbox" page
 * a test may write a NUL-terminated string into. Counts every ~2 ms into
 * DIR/counter. Self-check (SIGUSR1): pattern and secret intact, our SIGUSR1
 * handler still installed, then "PASS count=N inbox=<string>". */
#include "workload.h"

#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE	      4096
#define PATTERN_PAGES 8

static volatile unsigned long long counter;

/* Also computed by the tests (test/helpers/workloads.ts). */
static uint64_t pattern_word(uint64_t i)
{
	return (i + 1) * 0x9E3779B97F4A7C15ULL ^ 0x5453435249550000ULL;
}

static const char *check(uint64_t *pattern, uint64_t *secret)
{
	for (uint64_t i = 0; i < PATTERN_PAGES * PAGE / 8; i++)
		if (pattern[i] != pattern_word(i))
			return "pattern changed";
	if (mprotect(secret, PAGE, PROT_READ) < 0)
		return "mprotect secret";
	const char *bad = NULL;
	for (uint64_t i = 0; i < PAGE / 8; i++)
		if (secret[i] != ~pattern_word(i))
			bad = "secret page changed";
	if (mprotect(secret, PAGE, PROT_NONE) < 0)
		return "mprotect secret back";
	if (bad)
		return bad;
	struct sigaction old;
	if (sigaction(SIGUSR1, NULL, &old) < 0 || old.sa_handler != wl_on_usr1)
		return "SIGUSR1 handler changed";
	return NULL;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	uint8_t *region =
	    mmap(NULL, (PATTERN_PAGES + 2) * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		wl_die("mmap");
	uint64_t *pattern = (uint64_t *)region;
	uint64_t *secret = (uint64_t *)(region + PATTERN_PAGES * PAGE);
	char *inbox = (char *)(region + (PATTERN_PAGES + 1) * PAGE);
	for (uint64_t i = 0; i < PATTERN_PAGES * PAGE / 8; i++)
		pattern[i] = pattern_word(i);
	for (uint64_t i = 0; i < PAGE / 8; i++)
		secret[i] = ~pattern_word(i);
	if (mprotect(secret, PAGE, PROT_NONE) < 0)
		wl_die("mprotect");
	wl_install_check_handler();
	wl_write_counter(0);
	wl_ready("pattern=%p pages=%d secret=%p inbox=%p handler=%p counter=%p", (void *)pattern, PATTERN_PAGES,
		 (void *)secret, (void *)inbox, (void *)wl_on_usr1, (void *)&counter);
	for (;;) {
		counter++;
		wl_write_counter(counter);
		if (wl_check_requested) {
			wl_check_requested = 0;
			const char *bad = check(pattern, secret);
			inbox[PAGE - 1] = 0;
			if (bad)
				wl_result("FAIL %s", bad);
			else
				wl_result("PASS count=%llu inbox=%s", counter, inbox);
		}
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
	}
}
