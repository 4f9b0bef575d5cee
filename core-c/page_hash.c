// SPDX-License-Identifier: MIT
/*
 * Per-page hashing of a batch: one xxh64 (seed 0) per 4096-byte page and a
 * zero flag per page. Dirty tracking compares these hashes with the parent
 * image's when neither soft-dirty nor uffd-wp is available.
 */
#include "tc.h"

uint32_t tc_hash_pages_raw(const uint8_t *pages, uint32_t n, uint64_t *hashes, uint8_t *zero)
{
	uint32_t i, nzero = 0;

	for (i = 0; i < n; i++) {
		int z;

		hashes[i] = tc_xxh64_page(pages + (size_t)i * TC_PAGE_SIZE, &z);
		zero[i] = (uint8_t)z;
		nzero += (uint32_t)z;
	}
	return nzero;
}

TC_EXPORT("tc_hash_pages") int32_t tc_hash_pages(uint32_t off, uint32_t n, uint32_t hashes_off, uint32_t zero_off)
{
	const uint8_t *pages;
	uint64_t *hashes;
	uint8_t *zero;

	tc_clear_err();
	pages = tc_region(off, (uint64_t)n * TC_PAGE_SIZE, 8);
	hashes = tc_region(hashes_off, (uint64_t)n * sizeof(*hashes), 8);
	zero = tc_region(zero_off, n, 1);
	if (!pages || !hashes || !zero)
		return TC_ERR_BOUNDS;
	return (int32_t)tc_hash_pages_raw(pages, n, hashes, zero);
}
