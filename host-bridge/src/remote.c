/* One syscall run inside a stopped tracee, for the state only the task itself
 * can tell (sigactions, some socket options) and for every step of a restore.
 *
 * No parasite blob: `syscall; int3` is written over the first bytes of an
 * executable mapping, the registers point there, the task runs to the
 * syscall's exit stop (the int3 is only a guard, never reached), and then
 * bytes, registers and signal mask are put back -- on every path, errors
 * included. While it runs every blockable signal is blocked, so a
 * pending signal cannot be delivered into the borrowed register state; only a
 * SIGSTOP can still arrive, and it is sent again after the call. */
#include "bridge.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>
#include <elf.h>

_Static_assert(sizeof(struct user_regs_struct) == BRIDGE_REGS_SIZE, "x86_64 user_regs_struct");

/* syscall (0f 05), int3 (cc), little-endian in the low bytes of a word. */
#define INJECT_CODE 0xcc050fULL
#define INJECT_MASK 0xffffffULL

/* The first executable mapping that is ordinary memory: [vdso], [vsyscall] and
 * [uprobes] are special mappings where a ptrace write either fails or would
 * break the task. */
static int find_exec_mapping(int pid, uint64_t *addr)
{
	char path[64], line[4096];
	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? ESRCH : errno;
	int err = ENOEXEC;
	while (fgets(line, sizeof(line), f)) {
		uint64_t start, end;
		char perms[8];
		int name_at = 0;
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %*s %*s %*s %n", &start, &end, perms, &name_at) < 3)
			continue;
		if (perms[2] != 'x' || end - start < 8)
			continue;
		if (name_at > 0 && line[name_at] == '[')
			continue;
		*addr = start;
		err = 0;
		break;
	}
	fclose(f);
	return err;
}

typedef struct {
	int pid;
	uint64_t addr;
	uint64_t saved_word;
	struct user_regs_struct saved_regs;
	uint64_t saved_mask;
	bool word_changed, regs_changed, mask_changed;
	bool resend_sigstop;
	bool gone; /* the task died; nothing to put back */
} remote_ctx;

static int put_back(remote_ctx *c)
{
	int err = 0;
	if (c->gone)
		return 0;
	if (c->word_changed &&
	    ptrace(PTRACE_POKEDATA, c->pid, (void *)(uintptr_t)c->addr, (void *)(uintptr_t)c->saved_word) < 0)
		err = errno;
	if (c->regs_changed) {
		struct iovec iov = { &c->saved_regs, sizeof(c->saved_regs) };
		if (ptrace(PTRACE_SETREGSET, c->pid, (void *)NT_PRSTATUS, &iov) < 0 && !err)
			err = errno;
	}
	if (c->mask_changed && ptrace(PTRACE_SETSIGMASK, c->pid, (void *)sizeof(c->saved_mask), &c->saved_mask) < 0 &&
	    !err)
		err = errno;
	if (c->resend_sigstop)
		kill(c->pid, SIGSTOP);
	return err;
}

/* Which syscall stop the task is in: PTRACE_SYSCALL_INFO_ENTRY or _EXIT, or
 * PTRACE_SYSCALL_INFO_NONE for any other stop (a signal's). The dump does not
 * set PTRACE_O_TRACESYSGOOD (and PTRACE_GET_SYSCALL_INFO needs it), so a
 * syscall stop is told by its siginfo (si_code SIGTRAP, or SIGTRAP | 0x80 with
 * the option; a real SIGTRAP has SI_KERNEL, SI_USER, TRAP_*) and entry from
 * exit by the event message the kernel leaves there (PTRACE_EVENTMSG_SYSCALL_*,
 * which are the same numbers). */
static int syscall_stop(int pid)
{
	siginfo_t si;
	unsigned long msg = 0;
	if (ptrace(PTRACE_GETSIGINFO, pid, NULL, &si) < 0 || si.si_signo != SIGTRAP ||
	    (si.si_code != SIGTRAP && si.si_code != (SIGTRAP | 0x80)))
		return PTRACE_SYSCALL_INFO_NONE;
	if (ptrace(PTRACE_GETEVENTMSG, pid, NULL, &msg) < 0)
		return PTRACE_SYSCALL_INFO_NONE;
	return msg == PTRACE_SYSCALL_INFO_ENTRY || msg == PTRACE_SYSCALL_INFO_EXIT ? (int)msg
										   : PTRACE_SYSCALL_INFO_NONE;
}

/* -ERESTARTSYS .. -ERESTART_RESTARTBLOCK: an injected call cut short by our interrupt. */
static bool is_restart(int64_t rax)
{
	return rax <= -512 && rax >= -516;
}

/* Runs the injected syscall to its syscall-exit stop (PTRACE_SYSCALL), takes
 * the result, puts the task back and brings it into a PTRACE_EVENT_STOP.
 *
 * Why not let it run into the int3: a trap taken while SIGTRAP is blocked or
 * ignored -- and the mask blocks everything while the call runs -- makes the
 * kernel (force_sig_info_to_task) reset the task's SIGTRAP handler to SIG_DFL
 * and unblock SIGTRAP, and a SIGTRAP the task had pending would be taken for
 * ours and lost. A syscall stop raises no signal at all.
 *
 * Why the final interrupt stop: the task was frozen in a stop inside signal
 * handling, where resuming runs the kernel's syscall-restart logic on its own
 * registers (a task stopped in nanosleep has rax = -ERESTART_RESTARTBLOCK).
 * Resumed from a syscall-exit stop it would return to user space with that
 * rax. So the registers are put back at the exit stop, and one more
 * PTRACE_INTERRUPT brings the task to where it was.
 *
 * Returns 0 and sets *ret, or an errno: ESRCH (task died), ETIME (timeout,
 * task interrupted), EFAULT (a fault signal from the injected code, in
 * *fault_sig). The task is stopped on return unless it died. */
static int run_to_exit(remote_ctx *c, int64_t timeout_ms, int64_t *ret, int *fault_sig)
{
	enum { RUNNING, INTERRUPTED, FINISHED } state = RUNNING;
	int result = 0; /* returned once FINISHED reaches its interrupt stop */
	for (;;) {
		int st = 0;
		int r = bridge_wait(c->pid, 0, state == RUNNING ? timeout_ms : -1, &st);
		if (r < 0) {
			c->gone = errno == ECHILD;
			return c->gone ? ESRCH : errno;
		}
		if (r == 0) {
			if (ptrace(PTRACE_INTERRUPT, c->pid, NULL, NULL) < 0)
				return errno;
			state = INTERRUPTED;
			continue;
		}
		if (WIFEXITED(st) || WIFSIGNALED(st)) {
			c->gone = true;
			return ESRCH;
		}
		if (!WIFSTOPPED(st))
			continue;
		int sig = WSTOPSIG(st), event = (st >> 16) & 0xff;
		int resume_sig = 0, op;
		if (event == 0 && (sig & 0x7f) == SIGTRAP && state != FINISHED &&
		    (op = syscall_stop(c->pid)) != PTRACE_SYSCALL_INFO_NONE) {
			if (op == PTRACE_SYSCALL_INFO_EXIT) {
				struct user_regs_struct regs;
				struct iovec iov = { &regs, sizeof(regs) };
				if (ptrace(PTRACE_GETREGSET, c->pid, (void *)NT_PRSTATUS, &iov) < 0)
					return errno;
				*ret = (int64_t)regs.rax;
				result = state == INTERRUPTED && is_restart(*ret) ? ETIME : 0;
				int err = put_back(c);
				c->word_changed = c->regs_changed = c->mask_changed = c->resend_sigstop = false;
				if (err)
					return err;
				/* Every trap clears a pending interrupt, this one
				 * included: a timeout's interrupt is gone too. */
				if (ptrace(PTRACE_INTERRUPT, c->pid, NULL, NULL) < 0)
					return errno;
				state = FINISHED;
			} else if (state == INTERRUPTED && ptrace(PTRACE_INTERRUPT, c->pid, NULL, NULL) < 0) {
				/* The timeout's interrupt was used up by this entry stop:
				 * again, so that a blocking call returns at once. */
				return errno;
			}
		} else if (event == PTRACE_EVENT_STOP) {
			if (state == FINISHED)
				return result;
			if (state == INTERRUPTED)
				return ETIME; /* stopped before the syscall started */
					      /* A group-stop while the syscall ran: run on through it. */
		} else if (event == 0 && state == FINISHED) {
			/* The task's own mask is back: this signal is its own. */
			resume_sig = sig;
		} else if (event == 0 && sig == SIGSTOP) {
			c->resend_sigstop = true;
		} else if (event == 0) {
			/* Blocked signals cannot arrive here, so this is a fault of the
			 * injected code itself (SIGSEGV, SIGSYS from seccomp, ...). It is
			 * left undelivered: the caller's next resume suppresses it. */
			*fault_sig = sig;
			return EFAULT;
		}
		if (ptrace(state == FINISHED ? PTRACE_CONT : PTRACE_SYSCALL, c->pid, NULL,
			   (void *)(uintptr_t)resume_sig) < 0)
			return errno;
	}
}

/* The task's signal mask and registers replaced for the borrowed code, each change
 * flagged in c as soon as it is made. */
static int borrow(remote_ctx *c, uint64_t mask, struct user_regs_struct *regs, const char **step)
{
	struct iovec riov = { regs, sizeof(*regs) };
	*step = "ptrace(PTRACE_SETSIGMASK)";
	if (ptrace(PTRACE_SETSIGMASK, c->pid, (void *)sizeof(mask), &mask) < 0)
		return errno;
	c->mask_changed = true;
	*step = "ptrace(PTRACE_SETREGSET)";
	if (ptrace(PTRACE_SETREGSET, c->pid, (void *)NT_PRSTATUS, &riov) < 0)
		return errno;
	c->regs_changed = true;
	return 0;
}

/* Borrows the task for one syscall. Each change is flagged in c as soon as it
 * is made, so put_back undoes exactly what was done. Returns 0 or an errno,
 * with *step naming what failed. */
static int inject(remote_ctx *c, uint32_t nr, const uint64_t args[6], int64_t timeout_ms, int64_t *ret, int *fault_sig,
		  const char **step)
{
	uint64_t all = ~0ULL;
	struct user_regs_struct regs = c->saved_regs;
	regs.rax = nr;
	regs.rdi = args[0];
	regs.rsi = args[1];
	regs.rdx = args[2];
	regs.r10 = args[3];
	regs.r8 = args[4];
	regs.r9 = args[5];
	regs.rip = c->addr;
	/* Without orig_rax = -1 the kernel's syscall-restart logic would rewind
	 * rip/rax on resume if the task was stopped inside an interrupted syscall. */
	regs.orig_rax = (uint64_t)-1;

	*step = "ptrace(PTRACE_POKEDATA)";
	if (ptrace(PTRACE_POKEDATA, c->pid, (void *)(uintptr_t)c->addr,
		   (void *)(uintptr_t)((c->saved_word & ~INJECT_MASK) | INJECT_CODE)) < 0)
		return errno;
	c->word_changed = true;
	int err = borrow(c, all, &regs, step);
	if (err)
		return err;
	*step = "ptrace(PTRACE_SYSCALL)";
	if (ptrace(PTRACE_SYSCALL, c->pid, NULL, NULL) < 0)
		return errno;
	err = run_to_exit(c, timeout_ms, ret, fault_sig);
	*step = err == ETIME ? "timed out; the task was interrupted" : "waiting for the syscall-exit stop";
	return err;
}

static napi_value remote_syscall(napi_env env, napi_callback_info info)
{
	const char *fn = "remoteSyscall";
	napi_value argv[5];
	int32_t pid;
	uint32_t nr;
	uint64_t args[6] = { 0, 0, 0, 0, 0, 0 };
	if (!bridge_get_args_range(env, info, 3, 5, argv, NULL, fn) || !bridge_arg_pid(env, argv[0], &pid, fn) ||
	    !bridge_arg_uint32(env, argv[1], &nr, fn, "nr must be a syscall number (uint32)"))
		return NULL;
	bool is_array = false;
	uint32_t nargs = 0;
	if (napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array ||
	    napi_get_array_length(env, argv[2], &nargs) != napi_ok || nargs > 6)
		return bridge_throw_arg(env, fn, "args must be an array of at most 6 integers/bigints");
	for (uint32_t i = 0; i < nargs; i++) {
		napi_value v;
		napi_get_element(env, argv[2], i, &v);
		if (!bridge_arg_word(env, v, &args[i], fn, "args must be an array of at most 6 integers/bigints"))
			return NULL;
	}
	remote_ctx c;
	memset(&c, 0, sizeof(c));
	c.pid = pid;
	if (!bridge_is_nullish(env, argv[3])) {
		if (!bridge_arg_u64(env, argv[3], &c.addr, fn, "scratchAddr must be a non-negative integer"))
			return NULL;
	}
	int64_t timeout_ms = -1;
	if (!bridge_is_nullish(env, argv[4])) {
		uint32_t t;
		if (!bridge_arg_uint32(env, argv[4], &t, fn, "timeoutMs must be a uint32"))
			return NULL;
		timeout_ms = t;
	}

	/* Saving first: a task that is not in a ptrace-stop fails here with ESRCH
	 * before anything was changed. */
	struct iovec iov = { &c.saved_regs, sizeof(c.saved_regs) };
	if (ptrace(PTRACE_GETREGSET, pid, (void *)NT_PRSTATUS, &iov) < 0)
		return bridge_throw_errno(env, "remoteSyscall: ptrace(PTRACE_GETREGSET)", errno, pid, NULL);
	if (iov.iov_len != sizeof(c.saved_regs))
		return bridge_throw_errno(env, "remoteSyscall: 32-bit tasks are not supported", ENOTSUP, pid, NULL);
	if (ptrace(PTRACE_GETSIGMASK, pid, (void *)sizeof(c.saved_mask), &c.saved_mask) < 0)
		return bridge_throw_errno(env, "remoteSyscall: ptrace(PTRACE_GETSIGMASK)", errno, pid, NULL);
	if (bridge_is_nullish(env, argv[3])) {
		int err = find_exec_mapping(pid, &c.addr);
		if (err)
			return bridge_throw_errno(env, "remoteSyscall: no executable mapping in /proc/PID/maps", err,
						  pid, NULL);
	}
	errno = 0;
	long w = ptrace(PTRACE_PEEKDATA, pid, (void *)(uintptr_t)c.addr, NULL);
	if (w == -1 && errno)
		return bridge_throw_errno(env, "remoteSyscall: ptrace(PTRACE_PEEKDATA) of the scratch address", errno,
					  pid, NULL);
	c.saved_word = (uint64_t)w;

	const char *step = NULL;
	int fault_sig = 0;
	int64_t ret = 0;
	int err = inject(&c, nr, args, timeout_ms, &ret, &fault_sig, &step);
	/* Whatever happened, the task gets its own bytes, registers and mask back. */
	int rerr = put_back(&c);
	if (err) {
		char what[192];
		if (fault_sig)
			snprintf(what, sizeof(what), "remoteSyscall(%u): the injected code got signal %d at 0x%" PRIx64,
				 nr, fault_sig, c.addr);
		else
			snprintf(what, sizeof(what), "remoteSyscall(%u): %s", nr, step);
		return bridge_throw_errno(env, what, err, pid, NULL);
	}
	if (rerr)
		return bridge_throw_errno(env, "remoteSyscall: putting back registers/bytes/sigmask", rerr, pid, NULL);
	napi_value r;
	napi_create_bigint_int64(env, ret, &r);
	return r;
}

/* Whether signal `sig` is ignored (SigIgn) or pending (SigPnd, ShdPnd) per
 * /proc/PID/status; an unreadable file counts as yes. */
static bool sig_ignored_or_pending(int pid, int sig)
{
	static const char *const keys[] = { "SigIgn:", "SigPnd:", "ShdPnd:" };
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return true;
	int seen = 0;
	bool set = false;
	while (!set && seen < 3 && fgets(line, sizeof(line), f)) {
		for (int k = 0; k < 3; k++) {
			size_t klen = strlen(keys[k]);
			if (strncmp(line, keys[k], klen))
				continue;
			seen++;
			set = (strtoull(line + klen, NULL, 16) >> (sig - 1)) & 1;
		}
	}
	fclose(f);
	return set || seen < 3;
}

/* Runs the syscall loop at `code` (its table at `table`, `count` calls) in a
 * stopped tracee until the loop's closing int3, then puts registers and mask
 * back and brings the task into a PTRACE_EVENT_STOP, as run_to_exit does after
 * one call. SIGTRAP is the one signal left unblocked while the loop runs, so
 * that its int3 is an ordinary trap: the kernel resets a blocked or ignored
 * SIGTRAP's handler when it forces one, so the caller refuses (ENOTSUP) a task
 * that ignores SIGTRAP or has one pending (it would be taken for ours). A
 * SIGSTOP or SIGTRAP sent meanwhile is sent again afterwards. Returns 0 and
 * *left (calls not run: the loop stops at the first error), or an errno. */
static int run_loop(remote_ctx *c, uint64_t code, uint64_t end, uint64_t table, uint64_t count, uint64_t *left,
		    int *fault_sig, const char **step)
{
	uint64_t mask = ~0ULL & ~(1ULL << (SIGTRAP - 1));
	struct user_regs_struct regs = c->saved_regs;
	regs.rip = code;
	regs.rbx = table;
	regs.r12 = count;
	regs.orig_rax = (uint64_t)-1;
	bool resend_trap = false;
	int err = borrow(c, mask, &regs, step);
	if (err)
		return err;
	*step = "ptrace(PTRACE_CONT)";
	if (ptrace(PTRACE_CONT, c->pid, NULL, NULL) < 0)
		return errno;
	bool finished = false;
	*step = "waiting for the loop's trap";
	for (;;) {
		int st = 0;
		int r = bridge_wait(c->pid, 0, -1, &st);
		if (r < 0) {
			c->gone = errno == ECHILD;
			return c->gone ? ESRCH : errno;
		}
		if (WIFEXITED(st) || WIFSIGNALED(st)) {
			c->gone = true;
			return ESRCH;
		}
		if (!WIFSTOPPED(st))
			continue;
		int sig = WSTOPSIG(st), event = (st >> 16) & 0xff;
		int resume_sig = 0;
		if (event == PTRACE_EVENT_STOP) {
			if (finished) {
				if (resend_trap)
					syscall(SYS_tgkill, c->pid, c->pid, SIGTRAP);
				return 0;
			}
			/* a group-stop while the loop ran: run on through it */
		} else if (finished) {
			/* the task's own mask is back: this signal is its own */
			resume_sig = sig;
		} else if (sig == SIGTRAP) {
			struct user_regs_struct now;
			struct iovec iov = { &now, sizeof(now) };
			if (ptrace(PTRACE_GETREGSET, c->pid, (void *)NT_PRSTATUS, &iov) < 0)
				return errno;
			if (now.rip != end) {
				/* someone else's SIGTRAP: kept, and sent again */
				resend_trap = true;
			} else {
				*left = now.r12;
				int err = put_back(c);
				c->regs_changed = c->mask_changed = c->resend_sigstop = false;
				if (err)
					return err;
				if (ptrace(PTRACE_INTERRUPT, c->pid, NULL, NULL) < 0)
					return errno;
				finished = true;
			}
		} else if (sig == SIGSTOP) {
			c->resend_sigstop = true;
		} else {
			*fault_sig = sig;
			return EFAULT;
		}
		if (ptrace(PTRACE_CONT, c->pid, NULL, (void *)(uintptr_t)resume_sig) < 0)
			return errno;
	}
}

/* remoteLoop(pid, code, end, table, count): see native.d.ts. */
static napi_value remote_loop(napi_env env, napi_callback_info info)
{
	const char *fn = "remoteLoop";
	napi_value argv[5];
	int32_t pid;
	uint64_t code, end, table, count;
	if (!bridge_get_args(env, info, 5, argv, fn) || !bridge_arg_pid(env, argv[0], &pid, fn) ||
	    !bridge_arg_u64(env, argv[1], &code, fn, "code must be an address") ||
	    !bridge_arg_u64(env, argv[2], &end, fn, "end must be an address") ||
	    !bridge_arg_u64(env, argv[3], &table, fn, "table must be an address") ||
	    !bridge_arg_u64(env, argv[4], &count, fn, "count must be a non-negative integer"))
		return NULL;
	if (sig_ignored_or_pending(pid, SIGTRAP))
		return bridge_throw_errno(env, "remoteLoop: SIGTRAP is ignored or pending in the task", ENOTSUP, pid,
					  NULL);
	remote_ctx c;
	memset(&c, 0, sizeof(c));
	c.pid = pid;
	struct iovec iov = { &c.saved_regs, sizeof(c.saved_regs) };
	if (ptrace(PTRACE_GETREGSET, pid, (void *)NT_PRSTATUS, &iov) < 0)
		return bridge_throw_errno(env, "remoteLoop: ptrace(PTRACE_GETREGSET)", errno, pid, NULL);
	if (iov.iov_len != sizeof(c.saved_regs))
		return bridge_throw_errno(env, "remoteLoop: 32-bit tasks are not supported", ENOTSUP, pid, NULL);
	if (ptrace(PTRACE_GETSIGMASK, pid, (void *)sizeof(c.saved_mask), &c.saved_mask) < 0)
		return bridge_throw_errno(env, "remoteLoop: ptrace(PTRACE_GETSIGMASK)", errno, pid, NULL);
	const char *step = NULL;
	int fault_sig = 0;
	uint64_t left = count;
	int err = run_loop(&c, code, end, table, count, &left, &fault_sig, &step);
	int rerr = put_back(&c);
	if (err) {
		char what[192];
		if (fault_sig)
			snprintf(what, sizeof(what), "remoteLoop: the loop got signal %d", fault_sig);
		else
			snprintf(what, sizeof(what), "remoteLoop: %s", step);
		return bridge_throw_errno(env, what, err, pid, NULL);
	}
	if (rerr)
		return bridge_throw_errno(env, "remoteLoop: putting back registers/sigmask", rerr, pid, NULL);
	napi_value r;
	napi_create_double(env, (double)(count - left), &r);
	return r;
}

void bridge_init_remote(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "remoteSyscall", remote_syscall },
		{ "remoteLoop", remote_loop },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
