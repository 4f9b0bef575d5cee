// SPDX-License-Identifier: MIT
/*
 * XXH64 (xxHash's 64-bit variant), one-shot and streaming, written from the
 * published algorithm description. The page variant fuses zero-page
 * detection into the hash loop so each page is read once.
 */
#include "tc.h"

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
	return (x << r) | (x >> (64 - r));
}

/* Unaligned little-endian loads; both targets (wasm32, x86-64) are little endian. */
static inline uint64_t read64(const uint8_t *p)
{
	uint64_t v;

	__builtin_memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint32_t read32(const uint8_t *p)
{
	uint32_t v;

	__builtin_memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint64_t round64(uint64_t acc, uint64_t input)
{
	acc += input * P2;
	acc = rotl64(acc, 31);
	return acc * P1;
}

static inline uint64_t merge_round(uint64_t acc, uint64_t val)
{
	acc ^= round64(0, val);
	return acc * P1 + P4;
}

static inline uint64_t converge(const uint64_t v[4])
{
	uint64_t h = rotl64(v[0], 1) + rotl64(v[1], 7) + rotl64(v[2], 12) + rotl64(v[3], 18);

	h = merge_round(h, v[0]);
	h = merge_round(h, v[1]);
	h = merge_round(h, v[2]);
	return merge_round(h, v[3]);
}

static inline uint64_t avalanche(uint64_t h)
{
	h ^= h >> 33;
	h *= P2;
	h ^= h >> 29;
	h *= P3;
	h ^= h >> 32;
	return h;
}

/* Mixes the last len (< 32) bytes into h. */
static uint64_t finalize(uint64_t h, const uint8_t *p, size_t len)
{
	while (len >= 8) {
		h ^= round64(0, read64(p));
		h = rotl64(h, 27) * P1 + P4;
		p += 8;
		len -= 8;
	}
	if (len >= 4) {
		h ^= (uint64_t)read32(p) * P1;
		h = rotl64(h, 23) * P2 + P3;
		p += 4;
		len -= 4;
	}
	while (len > 0) {
		h ^= (uint64_t)(*p) * P5;
		h = rotl64(h, 11) * P1;
		p++;
		len--;
	}
	return avalanche(h);
}

static inline void init_lanes(uint64_t v[4], uint64_t seed)
{
	v[0] = seed + P1 + P2;
	v[1] = seed + P2;
	v[2] = seed;
	v[3] = seed - P1;
}

/* Consumes whole 32-byte stripes; returns the bytes consumed. */
static size_t stripes(uint64_t v[4], const uint8_t *p, size_t len)
{
	uint64_t v1 = v[0], v2 = v[1], v3 = v[2], v4 = v[3];
	size_t done = 0;

	while (len - done >= 32) {
		v1 = round64(v1, read64(p + done));
		v2 = round64(v2, read64(p + done + 8));
		v3 = round64(v3, read64(p + done + 16));
		v4 = round64(v4, read64(p + done + 24));
		done += 32;
	}
	v[0] = v1;
	v[1] = v2;
	v[2] = v3;
	v[3] = v4;
	return done;
}

uint64_t tc_xxh64_raw(const void *data, size_t len, uint64_t seed)
{
	const uint8_t *p = data;
	uint64_t h;

	if (len >= 32) {
		uint64_t v[4];
		size_t done;

		init_lanes(v, seed);
		done = stripes(v, p, len);
		h = converge(v);
		p += done;
		h += len;
		return finalize(h, p, len - done);
	}
	h = seed + P5 + len;
	return finalize(h, p, len);
}

uint64_t tc_xxh64_page(const uint8_t *page, int *is_zero)
{
	uint64_t v1 = P1 + P2, v2 = P2, v3 = 0, v4 = -P1;
	uint64_t any = 0;
	uint64_t v[4];
	unsigned i;

	for (i = 0; i < TC_PAGE_SIZE; i += 32) {
		uint64_t a = read64(page + i), b = read64(page + i + 8);
		uint64_t c = read64(page + i + 16), d = read64(page + i + 24);

		any |= a | b | c | d;
		v1 = round64(v1, a);
		v2 = round64(v2, b);
		v3 = round64(v3, c);
		v4 = round64(v4, d);
	}
	*is_zero = any == 0;
	v[0] = v1;
	v[1] = v2;
	v[2] = v3;
	v[3] = v4;
	return avalanche(converge(v) + TC_PAGE_SIZE);
}

void tc_xxh64_reset_raw(struct tc_xxh64_state *st, uint64_t seed)
{
	st->total_len = 0;
	init_lanes(st->v, seed);
	st->mem[0] = st->mem[1] = st->mem[2] = st->mem[3] = 0;
	st->memsize = 0;
	st->reserved = 0;
}

void tc_xxh64_update_raw(struct tc_xxh64_state *st, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint8_t *mem = (uint8_t *)st->mem;

	st->total_len += len;
	if (st->memsize + len < 32) {
		__builtin_memcpy(mem + st->memsize, p, len);
		st->memsize += (uint32_t)len;
		return;
	}
	if (st->memsize) {
		size_t fill = 32 - st->memsize;

		__builtin_memcpy(mem + st->memsize, p, fill);
		stripes(st->v, mem, 32);
		p += fill;
		len -= fill;
		st->memsize = 0;
	}
	if (len >= 32) {
		size_t done = stripes(st->v, p, len);

		p += done;
		len -= done;
	}
	if (len) {
		__builtin_memcpy(mem, p, len);
		st->memsize = (uint32_t)len;
	}
}

uint64_t tc_xxh64_digest_raw(const struct tc_xxh64_state *st)
{
	uint64_t h;

	if (st->total_len >= 32)
		h = converge(st->v);
	else
		h = st->v[2] + P5; /* v[2] still holds the seed: no stripe was consumed */
	h += st->total_len;
	return finalize(h, (const uint8_t *)st->mem, st->memsize);
}

/* ---- exported entry points (offsets into tc_buf) ---- */

TC_EXPORT("tc_xxh64") int32_t tc_xxh64(uint32_t off, uint32_t len, uint64_t seed, uint32_t out_off)
{
	const void *p;
	uint64_t *out;

	tc_clear_err();
	p = tc_region(off, len, 1);
	out = tc_region(out_off, sizeof(*out), 8);
	if (!p || !out)
		return TC_ERR_BOUNDS;
	*out = tc_xxh64_raw(p, len, seed);
	return 0;
}

TC_EXPORT("tc_xxh64_reset") int32_t tc_xxh64_reset(uint32_t state_off, uint64_t seed)
{
	struct tc_xxh64_state *st;

	tc_clear_err();
	st = tc_region(state_off, sizeof(*st), 8);
	if (!st)
		return TC_ERR_BOUNDS;
	tc_xxh64_reset_raw(st, seed);
	return 0;
}

/* The state comes back from JS between calls: refuse one whose buffered length is impossible. */
TC_EXPORT("tc_xxh64_update") int32_t tc_xxh64_update(uint32_t state_off, uint32_t off, uint32_t len)
{
	struct tc_xxh64_state *st;
	const void *p;

	tc_clear_err();
	st = tc_region(state_off, sizeof(*st), 8);
	p = tc_region(off, len, 1);
	if (!st || !p)
		return TC_ERR_BOUNDS;
	if (st->memsize >= 32)
		return TC_ERR_ARG;
	tc_xxh64_update_raw(st, p, len);
	return 0;
}

TC_EXPORT("tc_xxh64_digest") int32_t tc_xxh64_digest(uint32_t state_off, uint32_t out_off)
{
	const struct tc_xxh64_state *st;
	uint64_t *out;

	tc_clear_err();
	st = tc_region(state_off, sizeof(*st), 8);
	out = tc_region(out_off, sizeof(*out), 8);
	if (!st || !out)
		return TC_ERR_BOUNDS;
	if (st->memsize >= 32)
		return TC_ERR_ARG;
	*out = tc_xxh64_digest_raw(st);
	return 0;
}
