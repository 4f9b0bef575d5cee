/* Known register values for a dump to find: after its ready line the task spins in
 * a loop that never calls the kernel, with r12..r15 and ymm0/ymm1 holding fixed
 * values and rbx counting the iterations. */
#include "workload.h"

#include <stdint.h>

static const uint64_t ymm0[4] = { 0x1111111111111111ULL, 0x2222222222222222ULL, 0x3333333333333333ULL,
				  0x4444444444444444ULL };
static const uint64_t ymm1[4] = { 0xA5A5A5A5A5A5A5A5ULL, 0x5A5A5A5A5A5A5A5AULL, 0x0123456789ABCDEFULL,
				  0xFEDCBA9876543210ULL };

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_ready("r12=0x1212121212121212 r13=0x1313131313131313 r14=0x1414141414141414 r15=0x1515151515151515");
	__asm__ volatile("vmovdqu (%0), %%ymm0\n\t"
			 "vmovdqu (%1), %%ymm1\n\t"
			 "movabs $0x1212121212121212, %%r12\n\t"
			 "movabs $0x1313131313131313, %%r13\n\t"
			 "movabs $0x1414141414141414, %%r14\n\t"
			 "movabs $0x1515151515151515, %%r15\n\t"
			 "xor %%rbx, %%rbx\n"
			 "1:\tinc %%rbx\n\t"
			 "jmp 1b\n"
			 :
			 : "r"(ymm0), "r"(ymm1)
			 : "rbx", "r12", "r13", "r14", "r15", "memory");
	return 0;
}
