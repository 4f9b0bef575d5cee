/* hugetlb memory of three kinds, 2 MiB pages, each two huge pages filled with a pattern of
 * its own: a private MAP_HUGETLB mapping, a shared MAP_HUGETLB mapping, and a memfd made
 * with MFD_HUGETLB, mapped shared and held by its fd. Ready line: "private=ADDR
 * shared=ADDR memfd=ADDR fd=N", or "hugetlb=unavailable what=... errno=N" when the kernel
 * gives no huge page. Self-check (SIGUSR1): every byte as written, each range still one
 * VMA of 2048 kB kernel pages, private or shared as made; the memfd's mapping and its fd
 * still one object (a byte written through the mapping reads back with pread, then is put
 * back) -> "PASS hugetlb" or "FAIL hugetlb: why". */
#include "workload.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 4
#endif
#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21 << 26)
#endif

#define HUGE (2UL << 20)
#define LEN  (2 * HUGE)

static unsigned char *priv, *shr, *mfd_map;
static int mfd = -1;

static unsigned char pattern(int kind, unsigned long i)
{
	return (unsigned char)((i * 131 + (i >> 12) * 7 + (unsigned long)kind * 61) & 0xff);
}

static void fill(unsigned char *p, int kind)
{
	for (unsigned long i = 0; i < LEN; i++)
		p[i] = pattern(kind, i);
}

/* The VMA starting at addr: its end, perms, KernelPageSize (kB). */
static int vma_of(void *addr, unsigned long *end, char perms[5], unsigned long *kps)
{
	char smaps[4096];
	unsigned long s;
	const char *k;
	if (wl_smaps_of(addr, smaps, sizeof(smaps)) < 0 || sscanf(smaps, "%lx-%lx %4s ", &s, end, perms) != 3 ||
	    !(k = strstr(smaps, "\nKernelPageSize:")) || sscanf(k, "\nKernelPageSize: %lu kB", kps) != 1)
		return -1;
	return 0;
}

static int check_one(const char *what, unsigned char *p, int kind, char type)
{
	unsigned long end = 0, kps = 0;
	char perms[5] = "";
	if (vma_of(p, &end, perms, &kps) < 0)
		return wl_fail("%s: no VMA starts at %p any more", what, (void *)p);
	if (end != (unsigned long)p + LEN)
		return wl_fail("%s: the VMA at %p ends at 0x%lx, not %p", what, (void *)p, end, (void *)(p + LEN));
	if (kps != HUGE >> 10)
		return wl_fail("%s: KernelPageSize %lu kB at %p, not %lu kB (hugetlb lost)", what, kps, (void *)p,
			       HUGE >> 10);
	if (perms[3] != type)
		return wl_fail("%s: perms %s at %p, not %c", what, perms, (void *)p, type);
	for (unsigned long i = 0; i < LEN; i++)
		if (p[i] != pattern(kind, i))
			return wl_fail("%s: byte 0x%lx is %d, not %d", what, i, p[i], pattern(kind, i));
	return 0;
}

static int check(void)
{
	if (check_one("private", priv, 1, 'p') || check_one("shared", shr, 2, 's') ||
	    check_one("memfd", mfd_map, 3, 's'))
		return -1;
	/* the mapping and the fd are one object */
	unsigned long at = HUGE + 4096 + 17;
	unsigned char was = mfd_map[at], got = 0;
	mfd_map[at] = (unsigned char)(was ^ 0xa5);
	if (pread(mfd, &got, 1, (off_t)at) != 1)
		return wl_fail("pread of the memfd: %s", strerror(errno));
	mfd_map[at] = was;
	if (got != (unsigned char)(was ^ 0xa5))
		return wl_fail("the memfd's fd reads %d at 0x%lx where its mapping has %d: not one object", got, at,
			       was ^ 0xa5);
	return 0;
}

static void unavailable(const char *what)
{
	wl_ready("hugetlb=unavailable what=%s errno=%d", what, errno);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	priv = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
	if (priv == MAP_FAILED)
		unavailable("private");
	shr = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
	if (shr == MAP_FAILED)
		unavailable("shared");
	mfd = (int)syscall(SYS_memfd_create, "wl-huge", MFD_HUGETLB | MFD_HUGE_2MB);
	if (mfd < 0)
		unavailable("memfd_create");
	if (ftruncate(mfd, LEN) < 0)
		unavailable("ftruncate");
	mfd_map = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (mfd_map == MAP_FAILED)
		unavailable("memfd-mmap");
	fill(priv, 1);
	fill(shr, 2);
	fill(mfd_map, 3);
	wl_install_check_handler();
	wl_ready("private=%p shared=%p memfd=%p fd=%d", (void *)priv, (void *)shr, (void *)mfd_map, mfd);
	wl_serve_checks("hugetlb", check);
}
