/* FPU state across a dump and restore: ymm0..ymm3 hold known 256-bit values, MXCSR has
 * flush-to-zero and denormals-are-zero set, the x87 control word rounds toward zero. A
 * loop that makes no syscalls compares all of them with what they should be, over and
 * over; a difference is remembered. Self-check (SIGUSR1, polled by the loop):
 * "PASS rounds=N" or "FAIL <which>". After a check the loop loads the values again (the
 * result writing may use vector registers). */
#include "workload.h"

#include <stdint.h>

static const uint64_t want[4][4] __attribute__((aligned(32))) = {
	{ 0x1111111111111111ULL, 0x2222222222222222ULL, 0x3333333333333333ULL, 0x4444444444444444ULL },
	{ 0xA5A5A5A5A5A5A5A5ULL, 0x5A5A5A5A5A5A5A5AULL, 0x0123456789ABCDEFULL, 0xFEDCBA9876543210ULL },
	{ 0xDEADBEEFCAFEBABEULL, 0x0F0F0F0F0F0F0F0FULL, 0xF0F0F0F0F0F0F0F0ULL, 0x8000000000000001ULL },
	{ 0x7777777777777777ULL, 0x0000000000000000ULL, 0xFFFFFFFFFFFFFFFFULL, 0x1234567812345678ULL },
};
static const uint32_t want_mxcsr = 0x9fc0; /* FTZ | DAZ | all exceptions masked */
static const uint16_t want_cw = 0x0f7f;	   /* round toward zero, all exceptions masked */

/* 0: a check was asked for and everything held; 1..4: ymm(n-1) changed; 5: MXCSR; 6: x87 CW. */
static int spin(unsigned long long *rounds)
{
	int r;
	uint32_t mx = 0;
	uint16_t cw = 0;
	__asm__ volatile("vmovdqa %[w0], %%ymm0\n\t"
			 "vmovdqa %[w1], %%ymm1\n\t"
			 "vmovdqa %[w2], %%ymm2\n\t"
			 "vmovdqa %[w3], %%ymm3\n\t"
			 "ldmxcsr %[wmx]\n\t"
			 "fldcw %[wcw]\n"
			 "1:\n\t"
			 "incq %[rounds]\n\t"
			 "mov $1, %%eax\n\t"
			 "vpcmpeqq %[w0], %%ymm0, %%ymm4\n\t"
			 "vpmovmskb %%ymm4, %%ecx\n\t"
			 "cmp $-1, %%ecx\n\t"
			 "jne 3f\n\t"
			 "mov $2, %%eax\n\t"
			 "vpcmpeqq %[w1], %%ymm1, %%ymm4\n\t"
			 "vpmovmskb %%ymm4, %%ecx\n\t"
			 "cmp $-1, %%ecx\n\t"
			 "jne 3f\n\t"
			 "mov $3, %%eax\n\t"
			 "vpcmpeqq %[w2], %%ymm2, %%ymm4\n\t"
			 "vpmovmskb %%ymm4, %%ecx\n\t"
			 "cmp $-1, %%ecx\n\t"
			 "jne 3f\n\t"
			 "mov $4, %%eax\n\t"
			 "vpcmpeqq %[w3], %%ymm3, %%ymm4\n\t"
			 "vpmovmskb %%ymm4, %%ecx\n\t"
			 "cmp $-1, %%ecx\n\t"
			 "jne 3f\n\t"
			 "mov $5, %%eax\n\t"
			 "stmxcsr %[mx]\n\t"
			 "mov %[mx], %%ecx\n\t"
			 "cmp %[wmx], %%ecx\n\t"
			 "jne 3f\n\t"
			 "mov $6, %%eax\n\t"
			 "fnstcw %[cw]\n\t"
			 "movzwl %[cw], %%ecx\n\t"
			 "movzwl %[wcw], %%edx\n\t"
			 "cmp %%edx, %%ecx\n\t"
			 "jne 3f\n\t"
			 "cmpl $0, %[flag]\n\t"
			 "je 1b\n\t"
			 "xor %%eax, %%eax\n"
			 "3:\n\t"
			 "vzeroupper\n"
			 : "=&a"(r), [mx] "+m"(mx), [cw] "+m"(cw), [rounds] "+m"(*rounds)
			 : [w0] "m"(want[0]), [w1] "m"(want[1]), [w2] "m"(want[2]), [w3] "m"(want[3]),
			   [wmx] "m"(want_mxcsr), [wcw] "m"(want_cw), [flag] "m"(wl_check_requested)
			 : "rcx", "rdx", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "memory", "cc");
	return r;
}

int main(int argc, char **argv)
{
	static const char *what[] = { "", "ymm0", "ymm1", "ymm2", "ymm3", "mxcsr", "x87 control word" };
	wl_init(argc, argv);
	wl_install_check_handler();
	wl_ready("");
	unsigned long long rounds = 0;
	int bad = 0;
	for (;;) {
		int r = spin(&rounds);
		if (r && !bad)
			bad = r;
		if (!wl_check_requested)
			continue; /* a difference: keep the first, go on until asked */
		wl_check_requested = 0;
		if (bad)
			wl_result("FAIL %s changed", what[bad]);
		else
			wl_result("PASS rounds=%llu", rounds);
	}
}
