/* Which pages of a range are present or swapped, by the PAGEMAP_SCAN ioctl on
 * /proc/PID/pagemap (Linux >= 6.7): one call returns whole runs of pages with
 * the same categories instead of 8 bytes per page. host-bridge/pagemap.ts holds
 * the fallback that reads /proc/PID/pagemap itself. */
#include "bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "pagemap_scan.h"

#define VEC_LEN 512

/* Reads an optional numeric property of the options object. */
static bool opt_u64(napi_env env, napi_value obj, const char *key, uint64_t *out, const char *what)
{
	bool has = false;
	napi_value v;
	if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has)
		return true;
	if (napi_get_named_property(env, obj, key, &v) != napi_ok)
		return false;
	if (bridge_is_nullish(env, v))
		return true;
	return bridge_arg_u64(env, v, out, "pagemapScan", what);
}

/* /proc/PID/pagemap, read-only (its path left in `path` for errors): -1 and errno. */
static int open_pagemap(int pid, char path[64])
{
	snprintf(path, 64, "/proc/%d/pagemap", pid);
	return open(path, O_RDONLY | O_CLOEXEC);
}

static napi_value pagemap_scan(napi_env env, napi_callback_info info)
{
	const char *fn = "pagemapScan";
	napi_value argv[4];
	int32_t pid;
	uint64_t start, end;
	if (!bridge_get_args_range(env, info, 3, 4, argv, NULL, fn) || !bridge_arg_pid(env, argv[0], &pid, fn) ||
	    !bridge_arg_u64(env, argv[1], &start, fn, "start must be a non-negative integer") ||
	    !bridge_arg_u64(env, argv[2], &end, fn, "end must be a non-negative integer"))
		return NULL;
	if (start % 4096 || end % 4096 || end < start)
		return bridge_throw_arg(env, fn, "start and end must be page-aligned with start <= end");
	struct pm_scan_arg arg;
	memset(&arg, 0, sizeof(arg));
	arg.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
	arg.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_FILE | PAGE_IS_PFNZERO | PAGE_IS_HUGE;
	if (!bridge_is_nullish(env, argv[3])) {
		napi_valuetype t;
		if (napi_typeof(env, argv[3], &t) != napi_ok || t != napi_object)
			return bridge_throw_arg(env, fn, "options must be an object");
		if (!opt_u64(env, argv[3], "categoryMask", &arg.category_mask, "categoryMask must be a bit mask") ||
		    !opt_u64(env, argv[3], "categoryInverted", &arg.category_inverted,
			     "categoryInverted must be a bit mask") ||
		    !opt_u64(env, argv[3], "categoryAnyofMask", &arg.category_anyof_mask,
			     "categoryAnyofMask must be a bit mask") ||
		    !opt_u64(env, argv[3], "returnMask", &arg.return_mask, "returnMask must be a bit mask") ||
		    !opt_u64(env, argv[3], "flags", &arg.flags, "flags must be a bit mask (PM_SCAN_*)") ||
		    !opt_u64(env, argv[3], "maxPages", &arg.max_pages, "maxPages must be a non-negative integer"))
			return NULL;
	}

	char path[64];
	int fd = open_pagemap(pid, path);
	if (fd < 0)
		return bridge_throw_errno(env, "open", errno == ENOENT ? ESRCH : errno, pid, path);

	struct page_region vec[VEC_LEN];
	uint64_t *out = NULL; /* (start, end, categories) triples */
	size_t n = 0, cap = 0;
	uint64_t pages_left = arg.max_pages;
	arg.size = sizeof(arg);
	arg.start = start;
	arg.end = end;
	arg.vec = (uint64_t)(uintptr_t)vec;
	arg.vec_len = VEC_LEN;
	while (arg.start < end) {
		int r = ioctl(fd, PAGEMAP_SCAN, &arg);
		if (r < 0) {
			int err = errno;
			close(fd);
			free(out);
			return bridge_throw_errno(env, "ioctl(PAGEMAP_SCAN)", err, pid, path);
		}
		for (int i = 0; i < r; i++) {
			/* Runs split by a full vector are joined again. */
			if (n > 0 && out[3 * (n - 1) + 1] == vec[i].start &&
			    out[3 * (n - 1) + 2] == vec[i].categories) {
				out[3 * (n - 1) + 1] = vec[i].end;
				continue;
			}
			if (n == cap) {
				size_t ncap = cap ? cap * 2 : 64;
				uint64_t *p = realloc(out, ncap * 3 * sizeof(uint64_t));
				if (!p) {
					close(fd);
					free(out);
					return bridge_throw_errno(env, "realloc", ENOMEM, pid, NULL);
				}
				out = p;
				cap = ncap;
			}
			out[3 * n] = vec[i].start;
			out[3 * n + 1] = vec[i].end;
			out[3 * n + 2] = vec[i].categories;
			n++;
		}
		if (arg.max_pages) {
			uint64_t found = 0;
			for (int i = 0; i < r; i++)
				found += (vec[i].end - vec[i].start) / 4096;
			if (found >= pages_left)
				break;
			pages_left -= found;
			arg.max_pages = pages_left;
		}
		if (arg.walk_end <= arg.start) /* no progress: never spin */
			break;
		arg.start = arg.walk_end;
	}
	close(fd);

	napi_value ab, result;
	void *data = NULL;
	if (napi_create_arraybuffer(env, n * 3 * sizeof(uint64_t), &data, &ab) != napi_ok) {
		free(out);
		return bridge_throw_errno(env, "napi_create_arraybuffer", ENOMEM, pid, NULL);
	}
	if (n)
		memcpy(data, out, n * 3 * sizeof(uint64_t));
	free(out);
	napi_create_typedarray(env, napi_biguint64_array, n * 3, ab, 0, &result);
	return result;
}

/* Room in a growing array of n entries of `per` u64s for one more (doubling). */
static bool room_for(uint64_t **v, size_t *cap, size_t n, size_t per)
{
	if (n < *cap)
		return true;
	size_t ncap = *cap ? *cap * 2 : 64;
	uint64_t *nv = realloc(*v, ncap * per * sizeof(uint64_t));
	if (!nv)
		return false;
	*v = nv;
	*cap = ncap;
	return true;
}

/* A growing array of (start, length) pairs; adjacent pairs merge. */
struct pairs {
	uint64_t *v;
	size_t n, cap;
};

static bool pairs_add(struct pairs *p, uint64_t start, uint64_t end)
{
	if (end <= start)
		return true;
	if (p->n && p->v[2 * (p->n - 1)] + p->v[2 * (p->n - 1) + 1] == start) {
		p->v[2 * (p->n - 1) + 1] += end - start;
		return true;
	}
	if (!room_for(&p->v, &p->cap, p->n, 2))
		return false;
	p->v[2 * p->n] = start;
	p->v[2 * p->n + 1] = end - start;
	p->n++;
	return true;
}

/* A BigUint64Array of the `count` u64s at v; NULL when it cannot be made. */
static napi_value u64_array(napi_env env, const uint64_t *v, size_t count)
{
	napi_value ab, arr;
	void *data = NULL;
	if (napi_create_arraybuffer(env, count * sizeof(uint64_t), &data, &ab) != napi_ok ||
	    napi_create_typedarray(env, napi_biguint64_array, count, ab, 0, &arr) != napi_ok)
		return NULL;
	if (count)
		memcpy(data, v, count * sizeof(uint64_t));
	return arr;
}

/* A growing array of (start, length, tag) triples; adjacent ones of one tag merge. */
struct triples {
	uint64_t *v;
	size_t n, cap;
};

static bool triples_add(struct triples *t, uint64_t start, uint64_t len, uint64_t tag)
{
	if (len == 0)
		return true;
	if (t->n && t->v[3 * (t->n - 1)] + t->v[3 * (t->n - 1) + 1] == start && t->v[3 * (t->n - 1) + 2] == tag) {
		t->v[3 * (t->n - 1) + 1] += len;
		return true;
	}
	if (!room_for(&t->v, &t->cap, t->n, 3))
		return false;
	t->v[3 * t->n] = start;
	t->v[3 * t->n + 1] = len;
	t->v[3 * t->n + 2] = tag;
	t->n++;
	return true;
}

/* The unwritten pages the parent holds (`parent`), split by the runs copied before the
 * freeze (`pre`, (start, length) pairs in address order, from pair `*k` on): the pieces
 * pre-copied go to `got` tagged with their run's index + 1, the others to `rest`. */
static bool split_pre(const struct pairs *parent, const uint64_t *pre, size_t npre, size_t *k, struct pairs *rest,
		      struct triples *got)
{
	for (size_t i = 0; i < parent->n; i++) {
		uint64_t at = parent->v[2 * i], end = at + parent->v[2 * i + 1];
		while (*k < npre && pre[2 * *k] + pre[2 * *k + 1] <= at)
			(*k)++;
		for (size_t j = *k; at < end && j < npre; j++) {
			uint64_t rs = pre[2 * j], re = rs + pre[2 * j + 1];
			if (rs >= end)
				break;
			if (re <= at)
				continue;
			if (rs > at && !pairs_add(rest, at, rs))
				return false;
			uint64_t lo = rs > at ? rs : at, to = re < end ? re : end;
			if (!triples_add(got, lo, to - lo, j + 1))
				return false;
			at = to;
		}
		if (at < end && !pairs_add(rest, at, end))
			return false;
	}
	return true;
}

/* `copy` pairs (tag 0) and `got` triples merged in address order. */
static bool merge_runs(const struct pairs *copy, const struct triples *got, struct triples *out)
{
	size_t i = 0, j = 0;
	while (i < copy->n || j < got->n) {
		bool take_copy = i < copy->n && (j >= got->n || copy->v[2 * i] < got->v[3 * j]);
		bool ok = take_copy ? triples_add(out, copy->v[2 * i], copy->v[2 * i + 1], 0)
				    : triples_add(out, got->v[3 * j], got->v[3 * j + 1], got->v[3 * j + 2]);
		if (!ok)
			return false;
		if (take_copy)
			i++;
		else
			j++;
	}
	return true;
}

/* pagemapSplit(pid, start, end, covered, pre, from): the present or swapped pages of
 * [start, end) of a VMA whose writes are tracked (userfaultfd write-protect, PAGEMAP_SCAN's
 * written bit), but the shared zero page: { runs, parent, scanned, holes, next }.
 * `parent` holds the pages not written since they were protected that lie in `covered`
 * ((start, end) pairs, sorted: where the parent pagemap has entries) and were not copied
 * before the freeze: (start, length) pairs. `runs` the pages to dump, (start, length, tag)
 * triples in address order: tag 0 for the written ones and those the parent does not cover
 * (`holes` pages), read from the task; tag j + 1 for unwritten pages of run j of `pre`
 * ((start, length) pairs in address order: the runs copied before the freeze, precopy.ts),
 * written from that copy. `from`: the first run of `pre` that may meet this VMA; `next`:
 * where the next VMA goes on. One pass in C: a scan with scattered writes gives a region
 * per written run, tens of thousands, each of which the task waits for while frozen (the
 * same in JavaScript took 25 ms of a 75 ms freeze). */
static napi_value pagemap_split(napi_env env, napi_callback_info info)
{
	const char *fn = "pagemapSplit";
	napi_value argv[6];
	int32_t pid;
	uint64_t start, end, *cov, *pre, from;
	size_t ncov, npre;
	if (!bridge_get_args(env, info, 6, argv, fn) || !bridge_arg_pid(env, argv[0], &pid, fn) ||
	    !bridge_arg_u64(env, argv[1], &start, fn, "start must be a non-negative integer") ||
	    !bridge_arg_u64(env, argv[2], &end, fn, "end must be a non-negative integer") ||
	    !bridge_arg_u64s(env, argv[3], &cov, &ncov, 2, fn,
			     "covered must be a BigUint64Array of sorted (start, end) pairs") ||
	    !bridge_arg_u64s(env, argv[4], &pre, &npre, 2, fn,
			     "pre must be a BigUint64Array of sorted (start, length) pairs") ||
	    !bridge_arg_u64(env, argv[5], &from, fn, "from must be a non-negative integer"))
		return NULL;
	size_t k = from < npre ? (size_t)from : npre;
	if (start % 4096 || end % 4096 || end < start)
		return bridge_throw_arg(env, fn, "start and end must be page-aligned with start <= end");
	char path[64];
	int fd = open_pagemap(pid, path);
	if (fd < 0)
		return bridge_throw_errno(env, "open", errno == ENOENT ? ESRCH : errno, pid, path);
	struct page_region vec[VEC_LEN];
	struct pm_scan_arg arg;
	memset(&arg, 0, sizeof(arg));
	arg.size = sizeof(arg);
	arg.start = start;
	arg.end = end;
	arg.vec = (uint64_t)(uintptr_t)vec;
	arg.vec_len = VEC_LEN;
	arg.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
	arg.return_mask = PAGE_IS_WRITTEN | PAGE_IS_PFNZERO;
	struct pairs copy = { 0 }, parent = { 0 };
	uint64_t scanned = 0, holes = 0;
	size_t c = 0;
	bool ok = true;
	int err = 0;
	while (ok && arg.start < end) {
		int r = ioctl(fd, PAGEMAP_SCAN, &arg);
		if (r < 0) {
			err = errno;
			break;
		}
		for (int i = 0; ok && i < r; i++) {
			uint64_t a = vec[i].start, b = vec[i].end;
			scanned += (b - a) / 4096;
			if (vec[i].categories & PAGE_IS_PFNZERO)
				continue;
			if (vec[i].categories & PAGE_IS_WRITTEN) {
				ok = pairs_add(&copy, a, b);
				continue;
			}
			/* not written: from the parent where it covers the pages */
			while (c < ncov && cov[2 * c + 1] <= a)
				c++;
			for (size_t k = c; ok && a < b; k++) {
				uint64_t cs = k < ncov ? cov[2 * k] : b, ce = k < ncov ? cov[2 * k + 1] : b;
				uint64_t gap = cs < b ? (cs > a ? cs : a) : b;
				holes += (gap - a) / 4096;
				ok = pairs_add(&copy, a, gap);
				a = gap;
				if (!ok || a >= b)
					break;
				uint64_t to = ce < b ? ce : b;
				ok = pairs_add(&parent, a, to);
				a = to;
			}
		}
		if (arg.walk_end <= arg.start)
			break;
		arg.start = arg.walk_end;
	}
	close(fd);
	struct pairs rest = { 0 };
	struct triples got = { 0 }, runs = { 0 };
	if (!err && ok)
		ok = split_pre(&parent, pre, npre, &k, &rest, &got) && merge_runs(&copy, &got, &runs);
	free(copy.v);
	free(parent.v);
	free(got.v);
	napi_value out, v, runs_arr = NULL, parent_arr = NULL;
	if (!err && ok) {
		runs_arr = u64_array(env, runs.v, runs.n * 3);
		parent_arr = u64_array(env, rest.v, rest.n * 2);
	}
	free(runs.v);
	free(rest.v);
	if (err || !ok)
		return err ? bridge_throw_errno(env, "ioctl(PAGEMAP_SCAN)", err, pid, path)
			   : bridge_throw_errno(env, "realloc", ENOMEM, pid, NULL);
	if (!runs_arr || !parent_arr)
		return bridge_throw_errno(env, "napi_create_arraybuffer", ENOMEM, pid, NULL);
	napi_create_object(env, &out);
	napi_set_named_property(env, out, "runs", runs_arr);
	napi_set_named_property(env, out, "parent", parent_arr);
	napi_create_double(env, (double)scanned, &v);
	napi_set_named_property(env, out, "scanned", v);
	napi_create_double(env, (double)holes, &v);
	napi_set_named_property(env, out, "holes", v);
	napi_create_double(env, (double)k, &v);
	napi_set_named_property(env, out, "next", v);
	return out;
}

void bridge_init_pagemap(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "pagemapScan", pagemap_scan },
		{ "pagemapSplit", pagemap_split },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
