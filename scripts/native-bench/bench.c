// SPDX-License-Identifier: MIT
/*
 * Native harness for scripts/bench-wasm.ts: the same core-c code built with
 * gcc -O3, timed on the same data. Usage:
 *
 *   native-bench hash MIB     hash MIB of pages in place
 *   native-bench diff MIB     diff two MIB page arrays in place
 *   native-bench diffh MIB    hash MIB of pages and compare with parent hashes
 *   native-bench hashk MIB    hash a resident 4 MiB batch until MIB are done
 *   native-bench diffk MIB    diff resident 2 MiB halves until MIB are done
 *
 * Prints the seconds of one timed pass (after one untimed warm-up pass).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core-c/tc.h"

/* Same generator as bench-wasm.ts: xorshift32 words, every 8th page (i % 8 == 3) zero. */
static void fill(uint8_t *p, size_t pages)
{
	uint32_t x = 2463534242u, *w = (uint32_t *)p;
	size_t i, j;

	for (i = 0; i < pages; i++) {
		for (j = 0; j < TC_PAGE_SIZE / 4; j++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			w[i * (TC_PAGE_SIZE / 4) + j] = (i % 8 == 3) ? 0 : x;
		}
	}
}

/* b = a with one byte changed in every 16th page (i % 16 == 5). */
static void perturb(uint8_t *b, const uint8_t *a, size_t pages)
{
	size_t i;

	memcpy(b, a, pages * TC_PAGE_SIZE);
	for (i = 0; i < pages; i++)
		if (i % 16 == 5)
			b[i * TC_PAGE_SIZE + (i * 131) % TC_PAGE_SIZE] ^= 0x5a;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static volatile uint64_t sink;

static void run(const char *mode, uint8_t *a, uint8_t *b, size_t pages, const uint64_t *parent, uint64_t *hashes,
		uint8_t *zero, struct tc_page_run *runs)
{
	size_t p;

	if (!strcmp(mode, "hash")) {
		sink += tc_hash_pages_raw(a, (uint32_t)pages, hashes, zero);
	} else if (!strcmp(mode, "diff")) {
		for (p = 0; p < pages; p += TC_BUF_PAGES)
			sink += (uint64_t)tc_diff_pages_raw(a + p * TC_PAGE_SIZE, b + p * TC_PAGE_SIZE, TC_BUF_PAGES,
							    runs, TC_BUF_PAGES);
	} else if (!strcmp(mode, "diffh")) {
		for (p = 0; p < pages; p += TC_BUF_PAGES)
			sink += (uint64_t)tc_diff_hashes_raw(a + p * TC_PAGE_SIZE, TC_BUF_PAGES, parent + p, hashes + p,
							     runs, TC_BUF_PAGES);
	} else if (!strcmp(mode, "hashk")) {
		for (p = 0; p < pages; p += TC_BUF_PAGES)
			sink += tc_hash_pages_raw(a, TC_BUF_PAGES, hashes, zero);
	} else if (!strcmp(mode, "diffk")) {
		for (p = 0; p < pages; p += TC_BUF_PAGES / 2)
			sink += (uint64_t)tc_diff_pages_raw(a, b, TC_BUF_PAGES / 2, runs, TC_BUF_PAGES);
	}
}

int main(int argc, char **argv)
{
	size_t mib, pages;
	uint8_t *a, *b;
	uint64_t *hashes, *parent;
	uint8_t *zero;
	struct tc_page_run *runs;
	double t0;

	if (argc != 3) {
		fprintf(stderr, "usage: %s hash|diff|diffh|hashk|diffk MIB\n", argv[0]);
		return 2;
	}
	if (strcmp(argv[1], "hash") && strcmp(argv[1], "diff") && strcmp(argv[1], "diffh") &&
	    strcmp(argv[1], "hashk") && strcmp(argv[1], "diffk")) {
		fprintf(stderr, "native-bench: unknown mode %s\n", argv[1]);
		return 2;
	}
	mib = strtoul(argv[2], NULL, 10);
	pages = mib * 256;
	if (!pages || pages % TC_BUF_PAGES) {
		fprintf(stderr, "native-bench: MIB must be a positive multiple of 4\n");
		return 2;
	}
	if (posix_memalign((void **)&a, 4096, pages * TC_PAGE_SIZE) ||
	    posix_memalign((void **)&b, 4096, pages * TC_PAGE_SIZE)) {
		fprintf(stderr, "native-bench: out of memory\n");
		return 1;
	}
	hashes = malloc(pages * sizeof(*hashes));
	parent = malloc(pages * sizeof(*parent));
	zero = malloc(pages);
	runs = malloc(TC_BUF_PAGES * sizeof(*runs));
	if (!hashes || !parent || !zero || !runs)
		return 1;
	fill(a, pages);
	perturb(b, a, pages);
	tc_hash_pages_raw(b, (uint32_t)pages, parent, zero);
	if (!strcmp(argv[1], "hashk") || !strcmp(argv[1], "diffk")) {
		/* The resident batch: the first 4 MiB of a, and for diffk b's first 2 MiB at a + 2 MiB. */
		memcpy(a + TC_BUF_PAGES / 2 * TC_PAGE_SIZE, b, TC_BUF_PAGES / 2 * TC_PAGE_SIZE);
		b = a + TC_BUF_PAGES / 2 * TC_PAGE_SIZE;
	}
	run(argv[1], a, b, pages, parent, hashes, zero, runs);
	t0 = now();
	run(argv[1], a, b, pages, parent, hashes, zero, runs);
	printf("%.6f\n", now() - t0);
	return 0;
}
