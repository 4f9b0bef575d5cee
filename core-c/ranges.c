// SPDX-License-Identifier: MIT
/*
 * Range algebra on pagemap runs (vaddr, nr_pages, flags), each list sorted by
 * address with no two runs overlapping. Results of merge/subtract/intersect/
 * union are normalized: runs that touch and carry equal flags are merged.
 *
 *   subtract(a, b):  pages of a not in b, with a's flags
 *   intersect(a, b): pages in both, with a's flags
 *   union(a, b):     pages in either; where both have a page, a's flags win
 *   split(a, addr):  a with the run that straddles addr cut in two; runs are not merged
 */
#include "tc.h"

int32_t tc_runs_check(const struct tc_run *runs, uint32_t n, int32_t list, int dedup_flags)
{
	uint32_t i;

	for (i = 0; i < n; i++) {
		const struct tc_run *r = &runs[i];

		if (r->vaddr & TC_PAGE_MASK)
			return tc_fail(TC_ERR_ALIGN, list, i);
		if (!r->nr_pages)
			return tc_fail(TC_ERR_EMPTY_RUN, list, i);
		if (r->nr_pages > ((UINT64_MAX - r->vaddr) >> TC_PAGE_SHIFT))
			return tc_fail(TC_ERR_OVERFLOW, list, i);
		if (dedup_flags && (r->flags & TC_PE_PARENT) && (r->flags & TC_PE_PRESENT))
			return tc_fail(TC_ERR_FLAGS, list, i);
		if (i && r->vaddr < runs[i - 1].vaddr)
			return tc_fail(TC_ERR_UNSORTED, list, i);
		if (i && r->vaddr < tc_run_end(&runs[i - 1]))
			return tc_fail(TC_ERR_OVERLAP, list, i);
	}
	return 0;
}

void tc_emit(struct tc_emitter *e, uint64_t start, uint64_t end, uint32_t flags)
{
	if (start >= end)
		return;
	if (e->merge && e->n) {
		struct tc_run *last = &e->out[e->n - 1];

		if (tc_run_end(last) == start && last->flags == flags) {
			last->nr_pages += (end - start) >> TC_PAGE_SHIFT;
			return;
		}
	}
	if (e->n == e->cap) {
		e->overflow = 1;
		return;
	}
	e->out[e->n].vaddr = start;
	e->out[e->n].nr_pages = (end - start) >> TC_PAGE_SHIFT;
	e->out[e->n].flags = flags;
	e->out[e->n].reserved = 0;
	e->n++;
}

static void op_subtract(const struct tc_run *a, uint32_t na, const struct tc_run *b, uint32_t nb, struct tc_emitter *e)
{
	uint32_t i, j = 0;

	for (i = 0; i < na; i++) {
		uint64_t pos = a[i].vaddr, end = tc_run_end(&a[i]);
		uint32_t k;

		while (j < nb && tc_run_end(&b[j]) <= pos)
			j++;
		for (k = j; k < nb && b[k].vaddr < end; k++) {
			if (b[k].vaddr > pos)
				tc_emit(e, pos, b[k].vaddr, a[i].flags);
			pos = TC_MAX(pos, tc_run_end(&b[k]));
		}
		tc_emit(e, pos, end, a[i].flags);
	}
}

static void op_intersect(const struct tc_run *a, uint32_t na, const struct tc_run *b, uint32_t nb, struct tc_emitter *e)
{
	uint32_t i, j = 0;

	for (i = 0; i < na; i++) {
		uint64_t start = a[i].vaddr, end = tc_run_end(&a[i]);
		uint32_t k;

		while (j < nb && tc_run_end(&b[j]) <= start)
			j++;
		for (k = j; k < nb && b[k].vaddr < end; k++)
			tc_emit(e, TC_MAX(start, b[k].vaddr), TC_MIN(end, tc_run_end(&b[k])), a[i].flags);
	}
}

/* Emits a's runs whole and the parts of b's runs that a does not cover, in address order. */
static void op_union(const struct tc_run *a, uint32_t na, const struct tc_run *b, uint32_t nb, struct tc_emitter *e)
{
	uint32_t i = 0, j = 0;
	uint64_t bpos = 0; /* b below bpos is already emitted or covered by a */

	while (i < na || j < nb) {
		if (j < nb) {
			uint64_t bs = TC_MAX(b[j].vaddr, bpos), be = tc_run_end(&b[j]);

			if (bs >= be) {
				j++;
				continue;
			}
			if (i >= na || bs < a[i].vaddr) {
				uint64_t pe = (i < na && a[i].vaddr < be) ? a[i].vaddr : be;

				tc_emit(e, bs, pe, b[j].flags);
				bpos = pe;
				continue;
			}
		}
		tc_emit(e, a[i].vaddr, tc_run_end(&a[i]), a[i].flags);
		bpos = TC_MAX(bpos, tc_run_end(&a[i]));
		i++;
	}
}

typedef void (*binop_fn)(const struct tc_run *a, uint32_t na, const struct tc_run *b, uint32_t nb,
			 struct tc_emitter *e);

static int overlaps(const void *p, uint64_t plen, const void *q, uint64_t qlen)
{
	const uint8_t *x = p, *y = q;

	return plen && qlen && x < y + qlen && y < x + plen;
}

static int32_t binop(binop_fn fn, uint32_t a_off, uint32_t na, uint32_t b_off, uint32_t nb, uint32_t out_off,
		     uint32_t cap)
{
	uint64_t alen = (uint64_t)na * sizeof(struct tc_run), blen = (uint64_t)nb * sizeof(struct tc_run);
	uint64_t olen = (uint64_t)cap * sizeof(struct tc_run);
	const struct tc_run *a, *b;
	struct tc_emitter e = {0};
	int32_t ret;

	tc_clear_err();
	a = tc_region(a_off, alen, 8);
	b = tc_region(b_off, blen, 8);
	e.out = tc_region(out_off, olen, 8);
	if (!a || !b || !e.out || overlaps(e.out, olen, a, alen) || overlaps(e.out, olen, b, blen))
		return TC_ERR_BOUNDS;
	ret = tc_runs_check(a, na, 0, 0);
	if (ret)
		return ret;
	ret = tc_runs_check(b, nb, 1, 0);
	if (ret)
		return ret;
	e.cap = cap;
	e.merge = 1;
	fn(a, na, b, nb, &e);
	return e.overflow ? TC_ERR_NOSPACE : (int32_t)e.n;
}

TC_EXPORT("tc_runs_validate") int32_t tc_runs_validate(uint32_t off, uint32_t n, uint32_t dedup_flags)
{
	const struct tc_run *runs;

	tc_clear_err();
	runs = tc_region(off, (uint64_t)n * sizeof(*runs), 8);
	if (!runs)
		return TC_ERR_BOUNDS;
	return tc_runs_check(runs, n, 0, dedup_flags != 0);
}

TC_EXPORT("tc_runs_merge") int32_t tc_runs_merge(uint32_t off, uint32_t n, uint32_t out_off, uint32_t cap)
{
	return binop(op_union, off, n, 0, 0, out_off, cap);
}

TC_EXPORT("tc_runs_subtract")
int32_t tc_runs_subtract(uint32_t a_off, uint32_t na, uint32_t b_off, uint32_t nb, uint32_t out_off, uint32_t cap)
{
	return binop(op_subtract, a_off, na, b_off, nb, out_off, cap);
}

TC_EXPORT("tc_runs_intersect")
int32_t tc_runs_intersect(uint32_t a_off, uint32_t na, uint32_t b_off, uint32_t nb, uint32_t out_off, uint32_t cap)
{
	return binop(op_intersect, a_off, na, b_off, nb, out_off, cap);
}

TC_EXPORT("tc_runs_union")
int32_t tc_runs_union(uint32_t a_off, uint32_t na, uint32_t b_off, uint32_t nb, uint32_t out_off, uint32_t cap)
{
	return binop(op_union, a_off, na, b_off, nb, out_off, cap);
}

/* Returns the run count of the result; tc_aux() is how many of them lie below addr. */
TC_EXPORT("tc_runs_split")
int32_t tc_runs_split(uint32_t off, uint32_t n, uint64_t addr, uint32_t out_off, uint32_t cap)
{
	uint64_t ilen = (uint64_t)n * sizeof(struct tc_run), olen = (uint64_t)cap * sizeof(struct tc_run);
	const struct tc_run *runs;
	struct tc_emitter e = {0};
	uint32_t i, below = 0;
	int32_t ret;

	tc_clear_err();
	runs = tc_region(off, ilen, 8);
	e.out = tc_region(out_off, olen, 8);
	if (!runs || !e.out || overlaps(e.out, olen, runs, ilen))
		return TC_ERR_BOUNDS;
	if (addr & TC_PAGE_MASK)
		return tc_fail(TC_ERR_ALIGN, -1, 0);
	ret = tc_runs_check(runs, n, 0, 0);
	if (ret)
		return ret;
	e.cap = cap;
	for (i = 0; i < n; i++) {
		uint64_t start = runs[i].vaddr, end = tc_run_end(&runs[i]);

		if (start < addr && addr < end) {
			tc_emit(&e, start, addr, runs[i].flags);
			tc_emit(&e, addr, end, runs[i].flags);
			below++;
		} else {
			tc_emit(&e, start, end, runs[i].flags);
			below += end <= addr;
		}
	}
	if (e.overflow)
		return TC_ERR_NOSPACE;
	tc_set_aux(below);
	return (int32_t)e.n;
}
