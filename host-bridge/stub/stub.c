/* tscriu_stub: the tiny static program a restore starts in place of the dumped
 * process, and the subreaper of a detached restore.
 *
 * Freestanding on purpose (no libc): a libc would register rseq, set up TLS and
 * map its own pages, all of which restore would have to undo. The stub only
 * blocks every signal and sleeps; tscriu seizes it, borrows it to run the
 * syscalls of the rebuild from a trampoline page, unmaps the stub's own
 * mappings and gives it the dumped address space. It never stops itself with
 * SIGSTOP: a group-stop would survive PTRACE_DETACH and leave the restored
 * process in state T (DESIGN.md).
 *
 *   tscriu_stub          block all signals, then pause forever (the restore target)
 *   tscriu_stub reap     reap every child and orphan until none is left, then exit
 *                        (the parent process is a child subreaper already) */

typedef unsigned long u64;

#define NR_rt_sigprocmask 14
#define NR_pause	  34
#define NR_exit		  60
#define NR_wait4	  61
#define NR_prctl	  157
#define NR_exit_group	  231

#define EINTR  4
#define ECHILD 10

#define PR_SET_NAME 15
#define SIG_SETMASK 2
#define WALL	    0x40000000

static long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#define sys(nr, a, b, c) sys6(nr, (long)(a), (long)(b), (long)(c), 0, 0, 0)

static int same(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

static void reap(void)
{
	/* tscriu started us with every signal blocked; a reaper answers to them as usual. */
	u64 none = 0;
	sys6(NR_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, sizeof(none), 0, 0);
	sys6(NR_prctl, PR_SET_NAME, (long)"tscriu-reaper", 0, 0, 0, 0);
	for (;;) {
		long r = sys6(NR_wait4, -1, 0, WALL, 0, 0, 0);
		if (r == -ECHILD)
			sys(NR_exit_group, 0, 0, 0);
		/* r > 0: one reaped; -EINTR: try again */
	}
}

/* Called from _start with the initial stack pointer: argc, argv[], NULL, envp[]. */
__attribute__((used, noreturn)) static void stub_main(u64 *sp)
{
	long argc = (long)sp[0];
	char **argv = (char **)(sp + 1);
	if (argc > 1 && same(argv[1], "reap"))
		reap();
	u64 all = ~0UL;
	sys6(NR_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, sizeof(all), 0, 0);
	/* Only SIGKILL, SIGSTOP and tscriu's PTRACE_INTERRUPT get us out of here. */
	for (;;)
		sys(NR_pause, 0, 0, 0);
}

__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call stub_main\n"
	"	ud2\n");
