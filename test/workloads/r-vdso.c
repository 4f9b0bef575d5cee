/* Clocks through the vDSO across a dump and restore. The loop calls the vDSO's own
 * __vdso_clock_gettime (found through AT_SYSINFO_EHDR, not glibc's wrapper) for
 * CLOCK_MONOTONIC over and over, and records the largest step between two readings: a
 * restore into a time namespace keeps CLOCK_MONOTONIC continuous, so the step across the
 * dump stays small however long the images waited. Self-check (SIGUSR1): the vDSO is
 * still mapped where the auxiliary vector says, its clock agrees with the syscall's, and
 * time went forward: "PASS calls=N maxstep_ms=M" or "FAIL <reason>". */
#include "workload.h"

#include <elf.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <time.h>

typedef int (*vdso_gettime)(clockid_t, struct timespec *);

/* __vdso_clock_gettime from the vDSO's dynamic symbol table. */
static vdso_gettime find_vdso_gettime(uintptr_t base)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(base + eh->e_phoff);
	uintptr_t load = 0;
	const Elf64_Dyn *dyn = NULL;
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD && !load)
			load = base + ph[i].p_offset - ph[i].p_vaddr;
		if (ph[i].p_type == PT_DYNAMIC)
			dyn = (const Elf64_Dyn *)(base + ph[i].p_offset);
	}
	if (!dyn)
		return NULL;
	const Elf64_Sym *sym = NULL;
	const char *str = NULL;
	const uint32_t *hash = NULL;
	for (; dyn->d_tag != DT_NULL; dyn++) {
		if (dyn->d_tag == DT_SYMTAB)
			sym = (const Elf64_Sym *)(load + dyn->d_un.d_ptr);
		else if (dyn->d_tag == DT_STRTAB)
			str = (const char *)(load + dyn->d_un.d_ptr);
		else if (dyn->d_tag == DT_HASH)
			hash = (const uint32_t *)(load + dyn->d_un.d_ptr);
	}
	if (!sym || !str || !hash)
		return NULL;
	for (uint32_t i = 0; i < hash[1]; i++)
		if (sym[i].st_name && strcmp(str + sym[i].st_name, "__vdso_clock_gettime") == 0)
			return (vdso_gettime)(load + sym[i].st_value);
	return NULL;
}

static int64_t ns(const struct timespec *ts)
{
	return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

/* Is the vDSO mapped executable at base? It is [vdso] there, or, restored through a
 * vDSO proxy (another kernel's vDSO), an anonymous r-x mapping whose entry points jump
 * to the [vdso] mapped elsewhere. */
static int vdso_mapped_at(uintptr_t base)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int found = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long start = 0;
		char perms[5] = "";
		if (sscanf(line, "%lx-%*x %4s", &start, perms) == 2 && start == base && strncmp(perms, "r-x", 3) == 0)
			found = 1;
	}
	fclose(f);
	return found;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	uintptr_t base = getauxval(AT_SYSINFO_EHDR);
	vdso_gettime gettime = base ? find_vdso_gettime(base) : NULL;
	if (!gettime) {
		fprintf(stderr, "no __vdso_clock_gettime\n");
		return 1;
	}
	wl_install_check_handler();
	wl_ready("vdso=%p gettime=%p", (void *)base, (void *)gettime);
	struct timespec prev, now;
	gettime(CLOCK_MONOTONIC, &prev);
	unsigned long long calls = 0;
	int64_t maxstep = 0;
	const char *bad = NULL;
	for (;;) {
		gettime(CLOCK_MONOTONIC, &now);
		calls++;
		int64_t step = ns(&now) - ns(&prev);
		if (step < 0 && !bad)
			bad = "CLOCK_MONOTONIC went backwards";
		if (step > maxstep)
			maxstep = step;
		prev = now;
		if (!wl_check_requested)
			continue;
		wl_check_requested = 0;
		struct timespec sys;
		syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &sys);
		gettime(CLOCK_MONOTONIC, &now);
		int64_t apart = ns(&now) - ns(&sys);
		if (!bad && getauxval(AT_SYSINFO_EHDR) != base)
			bad = "AT_SYSINFO_EHDR moved";
		if (!bad && !vdso_mapped_at(base))
			bad = "no vDSO where the auxiliary vector says";
		if (!bad && (apart < 0 || apart > 100000000))
			bad = "the vDSO clock and the syscall's disagree";
		if (bad)
			wl_result("FAIL %s", bad);
		else
			wl_result("PASS calls=%llu maxstep_ms=%lld", calls, (long long)(maxstep / 1000000));
		gettime(CLOCK_MONOTONIC, &prev);
	}
}
