// SPDX-License-Identifier: MIT
/*
 * Dedup planning over a chain of incremental images, newest first.
 *
 * criu's rule (cr-dedup.c, dedup_one_iovec): every run of the newest image
 * that is not PE_PARENT is fresh, so the same addresses are redundant in the
 * parent; the walk goes on to the grandparent through every part the parent
 * covers, whatever its flags, and stops where an ancestor has no run at all.
 * Only the newest image's fresh runs start walks, as with criu's `dedup`: an
 * older image's own fresh pages leave its ancestors alone. For layer j:
 *
 *   reach(1)   = fresh(0)
 *   reach(j+1) = reach(j) ∩ cover(j)
 *   punch(j)   = reach(j) ∩ present(j)
 *
 * One call handles one layer: it takes reach(j) and the layer's runs and
 * gives punch(j) as byte ranges of the layer's pages file, and reach(j+1).
 */
#include "tc.h"

struct span_writer {
	struct tc_span *out;
	uint32_t n;
	uint32_t cap;
	int overflow;
};

/* Appends [a, b) when start/end pairs arrive in order; touching spans are merged. */
static void span_add(struct span_writer *w, uint64_t a, uint64_t b)
{
	if (a >= b)
		return;
	if (w->n && w->out[w->n - 1].b == a) {
		w->out[w->n - 1].b = b;
		return;
	}
	if (w->n == w->cap) {
		w->overflow = 1;
		return;
	}
	w->out[w->n].a = a;
	w->out[w->n].b = b;
	w->n++;
}

/* Same, for (offset, length) ranges of a pages file. */
static void punch_add(struct span_writer *w, uint64_t off, uint64_t len)
{
	if (w->n && w->out[w->n - 1].a + w->out[w->n - 1].b == off) {
		w->out[w->n - 1].b += len;
		return;
	}
	if (w->n == w->cap) {
		w->overflow = 1;
		return;
	}
	w->out[w->n].a = off;
	w->out[w->n].b = len;
	w->n++;
}

static int32_t check_reach(const struct tc_span *r, uint32_t n)
{
	uint32_t i;

	for (i = 0; i < n; i++) {
		if (r[i].a >= r[i].b || ((r[i].a | r[i].b) & TC_PAGE_MASK))
			return tc_fail(TC_ERR_ARG, -1, i);
		if (i && r[i].a < r[i - 1].b)
			return tc_fail(TC_ERR_ARG, -1, i);
	}
	return 0;
}

/* Largest page index whose byte offset still fits in a u64. */
#define MAX_FILE_PAGE (UINT64_MAX >> TC_PAGE_SHIFT)

TC_EXPORT("tc_dedup_step")
int32_t tc_dedup_step(uint32_t reach_off, uint32_t n_reach, uint32_t runs_off, uint32_t n_runs, uint64_t base_page,
		      uint32_t punch_off, uint32_t punch_cap, uint32_t next_off, uint32_t next_cap, uint32_t newest)
{
	const struct tc_span *reach;
	const struct tc_run *runs;
	struct span_writer punch = {0}, next = {0};
	uint64_t page = base_page; /* page index in the pages file of the next PE_PRESENT run */
	uint32_t i, j = 0;
	int32_t ret;

	tc_clear_err();
	reach = tc_region(reach_off, (uint64_t)n_reach * sizeof(*reach), 8);
	runs = tc_region(runs_off, (uint64_t)n_runs * sizeof(*runs), 8);
	punch.out = tc_region(punch_off, (uint64_t)punch_cap * sizeof(struct tc_span), 8);
	next.out = tc_region(next_off, (uint64_t)next_cap * sizeof(struct tc_span), 8);
	if (!reach || !runs || !punch.out || !next.out)
		return TC_ERR_BOUNDS;
	punch.cap = punch_cap;
	next.cap = next_cap;
	ret = check_reach(reach, n_reach);
	if (ret)
		return ret;
	ret = tc_runs_check(runs, n_runs, 0, 1);
	if (ret)
		return ret;

	for (i = 0; i < n_runs; i++) {
		const struct tc_run *r = &runs[i];
		uint64_t start = r->vaddr, end = tc_run_end(r);
		int fresh = !(r->flags & TC_PE_PARENT);
		int present = (r->flags & TC_PE_PRESENT) != 0;
		uint32_t k;

		if (present && (page > MAX_FILE_PAGE || r->nr_pages > MAX_FILE_PAGE - page))
			return tc_fail(TC_ERR_OVERFLOW, 0, i);
		while (j < n_reach && reach[j].b <= start)
			j++;
		/* The newest image starts the walks; older ones only pass them on. */
		if (newest && fresh)
			span_add(&next, start, end);
		for (k = j; k < n_reach && reach[k].a < end; k++) {
			uint64_t ps = TC_MAX(start, reach[k].a), pe = TC_MIN(end, reach[k].b);

			if (present)
				punch_add(&punch, (page << TC_PAGE_SHIFT) + (ps - start), pe - ps);
			span_add(&next, ps, pe);
		}
		if (present)
			page += r->nr_pages;
	}
	if (punch.overflow || next.overflow)
		return TC_ERR_NOSPACE;
	tc_set_aux(next.n);
	return (int32_t)punch.n;
}
