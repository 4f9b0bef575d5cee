// SPDX-License-Identifier: MIT
/*
 * CPU capability comparison with criu's rules (criu/arch/x86/cpu.c) and
 * criu's --cpu-cap parser (criu/config.c).
 *
 * Capability words follow compel's layout (compel/.../asm/cpu.h): word w,
 * bit b is feature w * 32 + b. Images of capability_ver 1 carry 12 words,
 * ver 2 carry 19; for ver 1 criu fills words 12..18 from the host, and old
 * images without xfeatures_mask / xsave_size / xsave_size_max take the
 * host's values, so those never fail on their own. criu never compares the
 * vendor: an image from an AMD CPU may restore on an Intel one if the
 * capabilities agree. It only refuses a vendor that is neither.
 */
#include "tc.h"

/* Bit `bit` of capability word `word` (the word is spelled out for the reader). */
#define W(word, bit) (1u << (bit))

/* Word indexes of compel's cpuid_leafs */
enum {
	CPUID_1_EDX = 0,
	CPUID_8000_0001_EDX = 1,
	CPUID_LNX_1 = 3,
	CPUID_1_ECX = 4,
	CPUID_8000_0001_ECX = 6,
	CPUID_7_0_EBX = 9,
	CPUID_D_1_EAX = 10,
	CPUID_7_0_ECX = 11,
	CPUID_8000_0008_EBX = 13,
	CPUID_7_0_EDX = 18,
};

/* The features the FPU check looks at (bit numbers as compel's X86_FEATURE_*). */
#define FEAT_FPU     (0 * 32 + 0)
#define FEAT_FXSR    (0 * 32 + 24)
#define FEAT_OSXSAVE (4 * 32 + 27)
#define FEAT_XSAVES  (10 * 32 + 3)

/*
 * Instruction-level capabilities, as criu's x86_ins_capability_mask: a
 * process may have used these, so the host must offer every one the image
 * has. Note criu's own list leaves out XSAVES here and FMA entirely.
 */
static const uint32_t ins_mask[TC_NCAPINTS] = {
	[CPUID_1_EDX] = W(0, 0) /* fpu */ | W(0, 4) /* tsc */ | W(0, 8) /* cx8 */ | W(0, 11) /* sep */ |
			W(0, 15) /* cmov */ | W(0, 19) /* clflush */ | W(0, 23) /* mmx */ | W(0, 24) /* fxsr */ |
			W(0, 25) /* sse */ | W(0, 26) /* sse2 */,
	[CPUID_8000_0001_EDX] = W(1, 11) /* syscall */ | W(1, 22) /* mmxext */ | W(1, 27) /* rdtscp */ |
				W(1, 30) /* 3dnowext */ | W(1, 31) /* 3dnow */,
	[CPUID_LNX_1] = W(3, 16) /* rep_good */ | W(3, 20) /* nopl */,
	[CPUID_1_ECX] = W(4, 0) /* pni */ | W(4, 1) /* pclmulqdq */ | W(4, 3) /* monitor */ | W(4, 9) /* ssse3 */ |
			W(4, 13) /* cx16 */ | W(4, 19) /* sse4_1 */ | W(4, 20) /* sse4_2 */ | W(4, 22) /* movbe */ |
			W(4, 23) /* popcnt */ | W(4, 25) /* aes */ | W(4, 26) /* xsave */ | W(4, 27) /* osxsave */ |
			W(4, 28) /* avx */ | W(4, 29) /* f16c */ | W(4, 30) /* rdrand */,
	[CPUID_8000_0001_ECX] = W(6, 5) /* abm */ | W(6, 6) /* sse4a */ | W(6, 7) /* misalignsse */ |
				W(6, 8) /* 3dnowprefetch */ | W(6, 11) /* xop */ | W(6, 16) /* fma4 */ |
				W(6, 21) /* tbm */,
	[CPUID_7_0_EBX] = W(9, 0) /* fsgsbase */ | W(9, 3) /* bmi1 */ | W(9, 4) /* hle */ | W(9, 5) /* avx2 */ |
			  W(9, 8) /* bmi2 */ | W(9, 9) /* erms */ | W(9, 11) /* rtm */ | W(9, 14) /* mpx */ |
			  W(9, 16) /* avx512f */ | W(9, 17) /* avx512dq */ | W(9, 18) /* rdseed */ |
			  W(9, 19) /* adx */ | W(9, 23) /* clflushopt */ | W(9, 26) /* avx512pf */ |
			  W(9, 27) /* avx512er */ | W(9, 28) /* avx512cd */ | W(9, 29) /* sha_ni */ |
			  W(9, 30) /* avx512bw */ | W(9, 31) /* avx512vl */,
	[CPUID_D_1_EAX] = W(10, 0) /* xsaveopt */ | W(10, 1) /* xsavec */ | W(10, 2) /* xgetbv1 */,
	[CPUID_7_0_ECX] = W(11, 1) /* avx512vbmi */ | W(11, 6) /* avx512_vbmi2 */ | W(11, 8) /* gfni */ |
			  W(11, 9) /* vaes */ | W(11, 10) /* vpclmulqdq */ | W(11, 11) /* avx512_vnni */ |
			  W(11, 12) /* avx512_bitalg */ | W(11, 13) /* tme */ | W(11, 14) /* avx512_vpopcntdq */ |
			  W(11, 22) /* rdpid */,
	[CPUID_8000_0008_EBX] = W(13, 0) /* clzero */,
	[CPUID_7_0_EDX] = W(18, 2) /* avx512_4vnniw */ | W(18, 3) /* avx512_4fmaps */,
};

static inline int has_bit(const uint32_t *words, unsigned feature)
{
	return (words[feature / 32] >> (feature % 32)) & 1;
}

/* criu's img_to_cpuinfo() checks: a known vendor and a word count that fits capability_ver. */
static int32_t check_entry(const struct tc_cpuinfo *c, int32_t list, int host)
{
	if (c->vendor != TC_VENDOR_INTEL && c->vendor != TC_VENDOR_AMD)
		return tc_fail(TC_ERR_VENDOR, list, c->vendor);
	if (c->cap_ver != 1 && c->cap_ver != 2)
		return tc_fail(TC_ERR_CAPVER, list, c->cap_ver);
	/* The host comes from cpuid and always has every word. */
	if (host && c->cap_ver != 2)
		return tc_fail(TC_ERR_CAPVER, list, c->cap_ver);
	if (c->n_caps != (c->cap_ver == 1 ? TC_NCAPINTS_V1 : TC_NCAPINTS_V2))
		return tc_fail(TC_ERR_NCAPS, list, c->n_caps);
	return 0;
}

static uint32_t fpu_missing(const uint32_t *img, const uint32_t *host)
{
	static const struct {
		unsigned feature;
		uint32_t flag;
	} fpu_bits[] = {
		{FEAT_FPU, TC_FPU_MISS_FPU},
		{FEAT_FXSR, TC_FPU_MISS_FXSR},
		{FEAT_OSXSAVE, TC_FPU_MISS_OSXSAVE},
		{FEAT_XSAVES, TC_FPU_MISS_XSAVES},
	};
	uint32_t miss = 0;
	unsigned i;

	for (i = 0; i < sizeof(fpu_bits) / sizeof(fpu_bits[0]); i++)
		if (has_bit(img, fpu_bits[i].feature) && !has_bit(host, fpu_bits[i].feature))
			miss |= fpu_bits[i].flag;
	return miss;
}

/*
 * Fills res with every difference, whatever caps asks for; returns the
 * TC_CAP_* bits of the requested checks that fail (0: compatible).
 */
int32_t tc_cpu_compare_raw(const struct tc_cpuinfo *img, const struct tc_cpuinfo *host, uint32_t caps,
			   struct tc_cpu_result *res)
{
	uint32_t w, ins_fail = 0, cpu_fail = 0;
	int32_t ret;

	ret = check_entry(img, 0, 0);
	if (ret)
		return ret;
	ret = check_entry(host, 1, 1);
	if (ret)
		return ret;

	for (w = 0; w < TC_NCAPINTS; w++)
		res->img_caps[w] = w < img->n_caps ? img->caps[w] : host->caps[w];

	res->img_xsave_size = (img->has & TC_CPU_HAS_XSAVE) ? img->xsave_size : host->xsave_size;
	res->img_xsave_size_max = (img->has & TC_CPU_HAS_XSAVE_MAX) ? img->xsave_size_max : host->xsave_size_max;
	res->img_xfeatures = (img->has & TC_CPU_HAS_XFEATURES) ? img->xfeatures : host->xfeatures;
	res->host_xsave_size = host->xsave_size;
	res->host_xsave_size_max = host->xsave_size_max;
	res->vendor_differs = img->vendor != host->vendor;

	res->fpu_missing = fpu_missing(res->img_caps, host->caps);
	res->xfeatures_missing = res->img_xfeatures & ~host->xfeatures;
	res->xsave_diff = (res->img_xsave_size != host->xsave_size ? TC_XSAVE_SIZE_DIFF : 0) |
			  (res->img_xsave_size_max != host->xsave_size_max ? TC_XSAVE_SIZE_MAX_DIFF : 0);

	for (w = 0; w < TC_NCAPINTS; w++) {
		uint32_t s = res->img_caps[w], d = host->caps[w];

		/* The host may have more than the image, never less. */
		res->ins_missing[w] = s & ins_mask[w] & ~d;
		res->img_only[w] = s & ~d;
		res->host_only[w] = d & ~s;
		ins_fail |= res->ins_missing[w];
		cpu_fail |= s ^ d;
	}

	res->failed = 0;
	if ((caps & TC_CAP_FPU) && (res->fpu_missing || res->xfeatures_missing || res->xsave_diff))
		res->failed |= TC_CAP_FPU;
	if ((caps & TC_CAP_INS) && ins_fail)
		res->failed |= TC_CAP_INS;
	if ((caps & TC_CAP_CPU) && cpu_fail)
		res->failed |= TC_CAP_CPU;
	return (int32_t)res->failed;
}

static int word_at(const char *s, uint32_t len, uint32_t pos, const char *word, uint32_t wlen)
{
	uint32_t i;

	if (len - pos < wlen)
		return 0;
	for (i = 0; i < wlen; i++)
		if (s[pos + i] != word[i])
			return 0;
	return 1;
}

/*
 * criu's parse_cpu_cap(): items are matched by prefix and need no separator
 * ("fpuins" works); '^' flips the sense of the following items until the next
 * ','; without an argument every check is turned on. Parsing starts from
 * `initial` (criu's default is fpu,ins) and, unless the result is none, adds
 * the "image" bit that makes dump write cpuinfo.img and restore check it.
 */
int32_t tc_cpucap_parse_raw(const char *s, uint32_t len, int has_arg, uint32_t initial)
{
	static const struct {
		const char *word;
		uint32_t wlen;
		uint32_t bits;
	} items[] = {
		{"fpu", 3, TC_CAP_FPU},
		{"all", 3, TC_CAP_ALL},
		{"cpu", 3, TC_CAP_CPU},
		{"ins", 3, TC_CAP_INS},
	};
	uint32_t caps = initial, pos = 0;
	int inverse = 0;

	if (!has_arg)
		return (int32_t)(caps | TC_CAP_ALL | TC_CAP_IMAGE);

	while (pos < len) {
		unsigned i;

		if (s[pos] == '^') {
			inverse = !inverse;
			pos++;
			continue;
		}
		if (s[pos] == ',') {
			inverse = 0;
			pos++;
			continue;
		}
		if (word_at(s, len, pos, "none", 4)) {
			caps = inverse ? TC_CAP_ALL : TC_CAP_NONE;
			pos += 4;
			continue;
		}
		for (i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
			if (word_at(s, len, pos, items[i].word, items[i].wlen)) {
				caps = inverse ? (caps & ~items[i].bits) : (caps | items[i].bits);
				pos += items[i].wlen;
				break;
			}
		}
		if (i == sizeof(items) / sizeof(items[0]))
			return tc_fail(TC_ERR_SYNTAX, -1, pos);
	}
	if (caps != TC_CAP_NONE)
		caps |= TC_CAP_IMAGE;
	return (int32_t)caps;
}

TC_EXPORT("tc_cpu_compare") int32_t tc_cpu_compare(uint32_t img_off, uint32_t host_off, uint32_t caps, uint32_t out_off)
{
	const struct tc_cpuinfo *img, *host;
	struct tc_cpu_result *res;

	tc_clear_err();
	img = tc_region(img_off, sizeof(*img), 8);
	host = tc_region(host_off, sizeof(*host), 8);
	res = tc_region(out_off, sizeof(*res), 8);
	if (!img || !host || !res)
		return TC_ERR_BOUNDS;
	return tc_cpu_compare_raw(img, host, caps, res);
}

TC_EXPORT("tc_cpucap_parse") int32_t tc_cpucap_parse(uint32_t off, uint32_t len, uint32_t has_arg, uint32_t initial)
{
	const char *s;

	tc_clear_err();
	s = tc_region(off, len, 1);
	if (!s)
		return TC_ERR_BOUNDS;
	return tc_cpucap_parse_raw(s, len, has_arg != 0, initial);
}
