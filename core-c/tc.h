/* SPDX-License-Identifier: MIT */
/*
 * tscriu wasm core: shared definitions.
 *
 * Everything here is pure and deterministic: no libc, no I/O, no allocation.
 * The TypeScript loader (wasm/loader.ts) talks to the module through one fixed
 * buffer (tc_buf, TC_BUF_SIZE bytes). Every exported function takes byte
 * offsets into that buffer, checks them, and returns a count (>= 0) or a
 * negative TC_ERR_* code. When an error is about one element of an input list,
 * tc_err_list()/tc_err_index() tell which one.
 *
 * The *_raw functions take plain pointers; the native benchmark harness
 * (scripts/native-bench) calls them on the same code compiled with gcc.
 */
#ifndef TC_CORE_H
#define TC_CORE_H

#include <stddef.h>
#include <stdint.h>

#define TC_ABI_VERSION 1

#define TC_PAGE_SHIFT 12
#define TC_PAGE_SIZE  (1u << TC_PAGE_SHIFT)
#define TC_PAGE_MASK  ((uint64_t)TC_PAGE_SIZE - 1)

/* 4 MiB of page data (1024 pages) plus 64 KiB for hashes, flags and run lists. */
#define TC_BUF_PAGES 1024u
#define TC_BUF_SIZE  (TC_BUF_PAGES * TC_PAGE_SIZE + 64u * 1024u)

#if defined(__wasm__)
#define TC_EXPORT(name) __attribute__((export_name(name))) __attribute__((visibility("default")))
#else
#define TC_EXPORT(name)
#endif

#define TC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TC_MAX(a, b) ((a) > (b) ? (a) : (b))

enum tc_err {
	TC_ERR_BOUNDS = -1,    /* a buffer region is outside tc_buf or misaligned */
	TC_ERR_ALIGN = -2,     /* an address is not page aligned */
	TC_ERR_EMPTY_RUN = -3, /* a run has nr_pages == 0 */
	TC_ERR_OVERFLOW = -4,  /* vaddr + nr_pages * 4096 or a file offset passes 2^64 */
	TC_ERR_UNSORTED = -5,  /* a run starts below the start of the run before it */
	TC_ERR_OVERLAP = -6,   /* a run starts inside the run before it */
	TC_ERR_NOSPACE = -7,   /* the output does not fit the capacity given */
	TC_ERR_FLAGS = -8,     /* PE_PARENT together with PE_PRESENT */
	TC_ERR_VENDOR = -9,    /* cpuinfo vendor is neither INTEL nor AMD */
	TC_ERR_CAPVER = -10,   /* unknown cpuinfo capability_ver */
	TC_ERR_NCAPS = -11,    /* capability word count does not match capability_ver */
	TC_ERR_SYNTAX = -12,   /* --cpu-cap string: unknown item at tc_err_index() */
	TC_ERR_ARG = -13,      /* any other bad argument */
};

/* Error detail for list inputs: which list (0 = first, 1 = second, or a layer) and which element. */
void tc_set_err(int32_t list, uint32_t index);
int32_t tc_fail(int32_t code, int32_t list, uint32_t index);
/* Every exported entry point starts with this so stale detail is never reported. */
void tc_clear_err(void);
/* A secondary result of the last call (e.g. the count of runs below a split address). */
void tc_set_aux(uint32_t value);

/* Returns a pointer to [off, off + len) of tc_buf, or NULL if it is outside or not `align`-aligned. */
void *tc_region(uint32_t off, uint64_t len, uint32_t align);

/* ---- xxh64 ---- */

struct tc_xxh64_state {
	uint64_t total_len;
	uint64_t v[4];
	uint64_t mem[4]; /* up to 31 buffered bytes */
	uint32_t memsize;
	uint32_t reserved;
};

uint64_t tc_xxh64_raw(const void *data, size_t len, uint64_t seed);
void tc_xxh64_reset_raw(struct tc_xxh64_state *st, uint64_t seed);
void tc_xxh64_update_raw(struct tc_xxh64_state *st, const void *data, size_t len);
uint64_t tc_xxh64_digest_raw(const struct tc_xxh64_state *st);
/* xxh64(seed 0) of one 4096-byte page; *is_zero is set when every byte is 0. */
uint64_t tc_xxh64_page(const uint8_t *page, int *is_zero);

/* ---- page hashing and diffing ---- */

/* A run of pages inside one batch: wire layout of diff results. */
struct tc_page_run {
	uint32_t first;
	uint32_t count;
};

/* Hashes n pages; zero[i] = 1 for an all-zero page. Returns the number of zero pages. */
uint32_t tc_hash_pages_raw(const uint8_t *pages, uint32_t n, uint64_t *hashes, uint8_t *zero);
/* Runs of pages where a and b differ; returns the run count or TC_ERR_NOSPACE. */
int32_t tc_diff_pages_raw(const uint8_t *a, const uint8_t *b, uint32_t n, struct tc_page_run *out, uint32_t cap);
/* Hashes n pages into hashes[] and returns the runs whose hash differs from parent[]. */
int32_t tc_diff_hashes_raw(const uint8_t *pages, uint32_t n, const uint64_t *parent, uint64_t *hashes,
			   struct tc_page_run *out, uint32_t cap);

/* ---- pagemap runs ---- */

#define TC_PE_PARENT  1u
#define TC_PE_LAZY    2u
#define TC_PE_PRESENT 4u

/* Wire layout of a pagemap run: 24 bytes, little endian. */
struct tc_run {
	uint64_t vaddr;
	uint64_t nr_pages;
	uint32_t flags;
	uint32_t reserved;
};

/* A half-open interval [start, end): reach sets of dedup, and (offset, length) punch ranges. */
struct tc_span {
	uint64_t a;
	uint64_t b;
};

/* Checks that runs are page aligned, non-empty, sorted and disjoint. */
int32_t tc_runs_check(const struct tc_run *runs, uint32_t n, int32_t list, int dedup_flags);

/* Appends runs in address order; merges a run into the previous one when they touch and flags match. */
struct tc_emitter {
	struct tc_run *out;
	uint32_t n;
	uint32_t cap;
	int merge;
	int overflow;
};

void tc_emit(struct tc_emitter *e, uint64_t start, uint64_t end, uint32_t flags);

static inline uint64_t tc_run_end(const struct tc_run *r)
{
	return r->vaddr + (r->nr_pages << TC_PAGE_SHIFT);
}

/* ---- cpu capabilities ---- */

#define TC_CPU_MAX_WORDS 32u
#define TC_NCAPINTS_V1	 12u
#define TC_NCAPINTS_V2	 19u
#define TC_NCAPINTS	 TC_NCAPINTS_V2

/* --cpu-cap bits, as criu's CPU_CAP_* */
#define TC_CAP_NONE    0u
#define TC_CAP_FPU     1u
#define TC_CAP_CPU     2u
#define TC_CAP_INS     4u
#define TC_CAP_IMAGE   8u
#define TC_CAP_ALL     (TC_CAP_FPU | TC_CAP_CPU | TC_CAP_INS)
#define TC_CAP_DEFAULT (TC_CAP_FPU | TC_CAP_INS)

/* cpuinfo_x86_entry.vendor */
#define TC_VENDOR_UNKNOWN 0u
#define TC_VENDOR_INTEL	  1u
#define TC_VENDOR_AMD	  2u

/* Which optional cpuinfo fields are present (old images lack them). */
#define TC_CPU_HAS_XFEATURES 1u
#define TC_CPU_HAS_XSAVE     2u
#define TC_CPU_HAS_XSAVE_MAX 4u

/* Wire layout of one cpuinfo_x86_entry (176 bytes). */
struct tc_cpuinfo {
	uint32_t vendor;
	uint32_t family;
	uint32_t model;
	uint32_t stepping;
	uint32_t cap_ver;
	uint32_t n_caps;
	uint32_t has;
	uint32_t xsave_size;
	uint32_t xsave_size_max;
	uint32_t reserved;
	uint64_t xfeatures;
	uint32_t caps[TC_CPU_MAX_WORDS];
};

/* Bits of tc_cpu_result.fpu_missing */
#define TC_FPU_MISS_FPU	    1u
#define TC_FPU_MISS_FXSR    2u
#define TC_FPU_MISS_OSXSAVE 4u
#define TC_FPU_MISS_XSAVES  8u

/* Bits of tc_cpu_result.xsave_diff */
#define TC_XSAVE_SIZE_DIFF     1u
#define TC_XSAVE_SIZE_MAX_DIFF 2u

/* Wire layout of the comparison result. */
struct tc_cpu_result {
	uint32_t failed; /* TC_CAP_FPU/CPU/INS bits of the checks that failed */
	uint32_t fpu_missing;
	uint32_t xsave_diff;
	uint32_t img_xsave_size;
	uint32_t host_xsave_size;
	uint32_t img_xsave_size_max;
	uint32_t host_xsave_size_max;
	uint32_t vendor_differs;
	uint64_t xfeatures_missing;	   /* image xfeatures the host lacks */
	uint64_t img_xfeatures;		   /* image mask after filling absent fields from the host */
	uint32_t ins_missing[TC_NCAPINTS]; /* instruction bits the image has and the host lacks */
	uint32_t img_only[TC_NCAPINTS];	   /* any bit the image has and the host lacks */
	uint32_t host_only[TC_NCAPINTS];   /* any bit the host has and the image lacks */
	uint32_t img_caps[TC_NCAPINTS];	   /* image words after filling v1 images from the host */
};

int32_t tc_cpu_compare_raw(const struct tc_cpuinfo *img, const struct tc_cpuinfo *host, uint32_t caps,
			   struct tc_cpu_result *res);
int32_t tc_cpucap_parse_raw(const char *s, uint32_t len, int has_arg, uint32_t initial);

#endif /* TC_CORE_H */
