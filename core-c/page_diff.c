// SPDX-License-Identifier: MIT
/*
 * Which pages of a batch changed: byte comparison of two batches, or hash
 * comparison against the parent image's page hashes. Results are runs
 * (first page, count) relative to the batch.
 */
#include "tc.h"

/*
 * 16-byte vectors through the compiler's vector extension: SSE2 with gcc on
 * x86-64, simd128 with clang on wasm (-msimd128). XOR-OR 128 bytes, then one
 * branch; a page that differs usually does so early.
 */
typedef uint64_t v2u64 __attribute__((vector_size(16)));

static inline v2u64 load16(const uint8_t *p)
{
	v2u64 v;

	__builtin_memcpy(&v, p, sizeof(v));
	return v;
}

static inline int page_differs(const uint8_t *a, const uint8_t *b)
{
	unsigned i, k;

	for (i = 0; i < TC_PAGE_SIZE; i += 128) {
		v2u64 x = load16(a + i) ^ load16(b + i);

		for (k = 16; k < 128; k += 16)
			x |= load16(a + i + k) ^ load16(b + i + k);
		if (x[0] | x[1])
			return 1;
	}
	return 0;
}

struct run_writer {
	struct tc_page_run *out;
	uint32_t n;
	uint32_t cap;
	int overflow;
};

static inline void mark(struct run_writer *w, uint32_t page)
{
	if (w->n && w->out[w->n - 1].first + w->out[w->n - 1].count == page) {
		w->out[w->n - 1].count++;
		return;
	}
	if (w->n == w->cap) {
		w->overflow = 1;
		return;
	}
	w->out[w->n].first = page;
	w->out[w->n].count = 1;
	w->n++;
}

int32_t tc_diff_pages_raw(const uint8_t *a, const uint8_t *b, uint32_t n, struct tc_page_run *out, uint32_t cap)
{
	struct run_writer w = {out, 0, cap, 0};
	uint32_t i;

	for (i = 0; i < n; i++) {
		size_t off = (size_t)i * TC_PAGE_SIZE;

		if (page_differs(a + off, b + off))
			mark(&w, i);
	}
	return w.overflow ? TC_ERR_NOSPACE : (int32_t)w.n;
}

int32_t tc_diff_hashes_raw(const uint8_t *pages, uint32_t n, const uint64_t *parent, uint64_t *hashes,
			   struct tc_page_run *out, uint32_t cap)
{
	struct run_writer w = {out, 0, cap, 0};
	uint32_t i;

	for (i = 0; i < n; i++) {
		int z;

		hashes[i] = tc_xxh64_page(pages + (size_t)i * TC_PAGE_SIZE, &z);
		if (hashes[i] != parent[i])
			mark(&w, i);
	}
	return w.overflow ? TC_ERR_NOSPACE : (int32_t)w.n;
}

TC_EXPORT("tc_diff_pages")
int32_t tc_diff_pages(uint32_t a_off, uint32_t b_off, uint32_t n, uint32_t out_off, uint32_t cap)
{
	const uint8_t *a, *b;
	struct tc_page_run *out;

	tc_clear_err();
	a = tc_region(a_off, (uint64_t)n * TC_PAGE_SIZE, 8);
	b = tc_region(b_off, (uint64_t)n * TC_PAGE_SIZE, 8);
	out = tc_region(out_off, (uint64_t)cap * sizeof(*out), 8);
	if (!a || !b || !out)
		return TC_ERR_BOUNDS;
	return tc_diff_pages_raw(a, b, n, out, cap);
}

TC_EXPORT("tc_diff_hashes")
int32_t tc_diff_hashes(uint32_t off, uint32_t n, uint32_t parent_off, uint32_t hashes_off, uint32_t out_off,
		       uint32_t cap)
{
	const uint8_t *pages;
	const uint64_t *parent;
	uint64_t *hashes;
	struct tc_page_run *out;

	tc_clear_err();
	pages = tc_region(off, (uint64_t)n * TC_PAGE_SIZE, 8);
	parent = tc_region(parent_off, (uint64_t)n * sizeof(*parent), 8);
	hashes = tc_region(hashes_off, (uint64_t)n * sizeof(*hashes), 8);
	out = tc_region(out_off, (uint64_t)cap * sizeof(*out), 8);
	if (!pages || !parent || !hashes || !out)
		return TC_ERR_BOUNDS;
	return tc_diff_hashes_raw(pages, n, parent, hashes, out, cap);
}
