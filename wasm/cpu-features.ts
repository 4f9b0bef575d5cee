// Names of x86 capability bits in compel's word layout (word * 32 + bit), as Linux
// spells them in /proc/cpuinfo. Only for messages: the comparison itself is in core-c.

const WORDS: Readonly<Record<number, Readonly<Record<number, string>>>> = {
  0: {
    0: "fpu", 1: "vme", 2: "de", 3: "pse", 4: "tsc", 5: "msr", 6: "pae", 7: "mce", 8: "cx8", 9: "apic",
    11: "sep", 12: "mtrr", 13: "pge", 14: "mca", 15: "cmov", 16: "pat", 17: "pse36", 18: "pn", 19: "clflush",
    21: "dts", 22: "acpi", 23: "mmx", 24: "fxsr", 25: "sse", 26: "sse2", 27: "ss", 28: "ht", 29: "tm",
    30: "ia64", 31: "pbe",
  },
  1: { 11: "syscall", 19: "mp", 20: "nx", 22: "mmxext", 25: "fxsr_opt", 26: "pdpe1gb", 27: "rdtscp", 29: "lm", 30: "3dnowext", 31: "3dnow" },
  3: { 8: "constant_tsc", 16: "rep_good", 20: "nopl", 25: "cpuid" },
  4: {
    0: "pni", 1: "pclmulqdq", 2: "dtes64", 3: "monitor", 4: "ds_cpl", 5: "vmx", 6: "smx", 7: "est", 8: "tm2",
    9: "ssse3", 10: "cid", 11: "sdbg", 12: "fma", 13: "cx16", 14: "xtpr", 15: "pdcm", 17: "pcid", 18: "dca",
    19: "sse4_1", 20: "sse4_2", 21: "x2apic", 22: "movbe", 23: "popcnt", 24: "tsc_deadline_timer", 25: "aes",
    26: "xsave", 27: "osxsave", 28: "avx", 29: "f16c", 30: "rdrand", 31: "hypervisor",
  },
  6: {
    0: "lahf_lm", 1: "cmp_legacy", 2: "svm", 3: "extapic", 4: "cr8_legacy", 5: "abm", 6: "sse4a", 7: "misalignsse",
    8: "3dnowprefetch", 9: "osvw", 10: "ibs", 11: "xop", 12: "skinit", 13: "wdt", 15: "lwp", 16: "fma4", 17: "tce",
    19: "nodeid_msr", 21: "tbm", 22: "topoext", 23: "perfctr_core", 24: "perfctr_nb", 26: "bpext", 27: "ptsc",
    28: "perfctr_llc", 29: "mwaitx",
  },
  9: {
    0: "fsgsbase", 1: "tsc_adjust", 3: "bmi1", 4: "hle", 5: "avx2", 7: "smep", 8: "bmi2", 9: "erms", 10: "invpcid",
    11: "rtm", 12: "cqm", 14: "mpx", 15: "rdt_a", 16: "avx512f", 17: "avx512dq", 18: "rdseed", 19: "adx", 20: "smap",
    21: "avx512ifma", 23: "clflushopt", 24: "clwb", 25: "intel_pt", 26: "avx512pf", 27: "avx512er", 28: "avx512cd",
    29: "sha_ni", 30: "avx512bw", 31: "avx512vl",
  },
  10: { 0: "xsaveopt", 1: "xsavec", 2: "xgetbv1", 3: "xsaves" },
  11: {
    0: "prefetchwt1", 1: "avx512vbmi", 2: "umip", 3: "pku", 4: "ospke", 6: "avx512_vbmi2", 7: "shstk", 8: "gfni",
    9: "vaes", 10: "vpclmulqdq", 11: "avx512_vnni", 12: "avx512_bitalg", 13: "tme", 14: "avx512_vpopcntdq",
    16: "la57", 22: "rdpid", 25: "cldemote",
  },
  13: { 0: "clzero", 1: "irperf", 2: "xsaveerptr", 12: "ibpb", 14: "ibrs", 15: "stibp" },
  18: {
    2: "avx512_4vnniw", 3: "avx512_4fmaps", 18: "pconfig", 26: "spec_ctrl", 27: "intel_stibp",
    29: "arch_capabilities", 31: "spec_ctrl_ssbd",
  },
};

/** The /proc/cpuinfo name of capability bit `bit` of word `word`, or null when unnamed here. */
export function featureName(word: number, bit: number): string | null {
  return WORDS[word]?.[bit] ?? null;
}
