/* remoteSyscalls: the syscalls of a rebuild, run one after another inside the
 * restore stub from the trampoline page tscriu mapped there (`syscall; int3`
 * at its first bytes).
 *
 * Unlike remoteSyscall (remote.c) nothing is saved and put back: the stub's own
 * code, registers and mask are disposable, and it blocks every signal itself,
 * so each call is only SETREGSET, CONT, wait and GETREGSET. A batch of calls
 * crosses into C once. The last syscall of a restore (munmap of the
 * trampoline) is run to its syscall-exit stop instead (toSyscallExit), so that
 * the task never returns into the page it just unmapped; that needs
 * PTRACE_O_TRACESYSGOOD set on the tracee. So is every call once the task's
 * own signal handlers are installed: the int3's trap, taken with SIGTRAP
 * blocked, would reset the SIGTRAP handler to SIG_DFL (the kernel's rule for
 * a trap that cannot be delivered) and swallow a pending SIGTRAP. */
#include "restore.h"

#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

#define TRAMP_CODE_LEN 3 /* syscall (0f 05) + int3 (cc): rip after the trap */
#define CALL_WORDS     7 /* nr, six arguments */

static int getregs(int pid, struct user_regs_struct *regs)
{
	struct iovec iov = { regs, sizeof(*regs) };
	return ptrace(PTRACE_GETREGSET, pid, (void *)NT_PRSTATUS, &iov) < 0 ? errno : 0;
}

static int setregs(int pid, struct user_regs_struct *regs)
{
	struct iovec iov = { regs, sizeof(*regs) };
	return ptrace(PTRACE_SETREGSET, pid, (void *)NT_PRSTATUS, &iov) < 0 ? errno : 0;
}

/* Waits for the next stop that is ours: group-stops (someone sent SIGSTOP)
 * are resumed with `req`. Returns 0 with *sig = the stop signal, or an errno:
 * ESRCH when the task died. */
static int wait_stop(int pid, enum __ptrace_request req, int *sig)
{
	for (;;) {
		int st = 0;
		if (bridge_wait(pid, 0, -1, &st) < 0)
			return errno == ECHILD ? ESRCH : errno;
		if (WIFEXITED(st) || WIFSIGNALED(st))
			return ESRCH;
		if (!WIFSTOPPED(st))
			continue;
		if ((st >> 16) == PTRACE_EVENT_STOP) {
			if (ptrace(req, pid, NULL, NULL) < 0)
				return errno;
			continue;
		}
		*sig = WSTOPSIG(st);
		return 0;
	}
}

typedef struct {
	int err;
	const char *step;
	int fault_sig;
	uint64_t fault_ip;
} call_error;

static int run_one(int pid, uint64_t tramp, struct user_regs_struct *base, const uint64_t *call, bool to_exit,
		   int64_t *result, call_error *ce)
{
	struct user_regs_struct regs = *base;
	regs.rax = call[0];
	regs.rdi = call[1];
	regs.rsi = call[2];
	regs.rdx = call[3];
	regs.r10 = call[4];
	regs.r8 = call[5];
	regs.r9 = call[6];
	regs.rip = tramp;
	/* The kernel's syscall-restart logic must not fire on resume. */
	regs.orig_rax = (uint64_t)-1;
	ce->step = "ptrace(PTRACE_SETREGSET)";
	if ((ce->err = setregs(pid, &regs)))
		return ce->err;
	int sig = 0;
	if (to_exit) {
		for (int stop = 0; stop < 2; stop++) {
			ce->step = "ptrace(PTRACE_SYSCALL)";
			if (ptrace(PTRACE_SYSCALL, pid, NULL, NULL) < 0)
				return ce->err = errno;
			ce->step = "waiting for a syscall stop";
			if ((ce->err = wait_stop(pid, PTRACE_SYSCALL, &sig)))
				return ce->err;
			if (sig != (SIGTRAP | 0x80))
				goto fault;
		}
	} else {
		ce->step = "ptrace(PTRACE_CONT)";
		if (ptrace(PTRACE_CONT, pid, NULL, NULL) < 0)
			return ce->err = errno;
		ce->step = "waiting for the trap";
		if ((ce->err = wait_stop(pid, PTRACE_CONT, &sig)))
			return ce->err;
		if (sig != SIGTRAP)
			goto fault;
	}
	ce->step = "ptrace(PTRACE_GETREGSET)";
	if ((ce->err = getregs(pid, &regs)))
		return ce->err;
	if (!to_exit && regs.rip != tramp + TRAMP_CODE_LEN)
		goto fault;
	*result = (int64_t)regs.rax;
	return 0;
fault:
	/* A fault of the trampoline itself (or a stray trap): the signal is left
	 * undelivered; the caller kills the task. */
	getregs(pid, &regs);
	ce->fault_sig = sig;
	ce->fault_ip = regs.rip;
	ce->step = "the trampoline did not trap as expected";
	return ce->err = EFAULT;
}

static bool opt_bool(napi_env env, napi_value obj, const char *key)
{
	bool has = false, b = false;
	napi_value v;
	if (bridge_is_nullish(env, obj) || napi_has_named_property(env, obj, key, &has) != napi_ok || !has ||
	    napi_get_named_property(env, obj, key, &v) != napi_ok)
		return false;
	napi_get_value_bool(env, v, &b);
	return b;
}

static napi_value remote_syscalls(napi_env env, napi_callback_info info)
{
	const char *fn = "remoteSyscalls";
	napi_value argv[4];
	int32_t pid;
	uint64_t tramp;
	uint8_t *data;
	size_t len;
	if (!bridge_get_args_range(env, info, 3, 4, argv, NULL, fn) || !bridge_arg_pid(env, argv[0], &pid, fn) ||
	    !bridge_arg_u64(env, argv[1], &tramp, fn, "trampoline must be a non-negative integer") ||
	    !bridge_arg_bytes(env, argv[2], &data, &len, fn, "calls must be a BigUint64Array/BigInt64Array"))
		return NULL;
	if (len % (CALL_WORDS * 8) != 0)
		return bridge_throw_arg(env, fn, "calls must hold 7 words (nr and six arguments) per call");
	bool stop_on_error = !opt_bool(env, argv[3], "keepGoing");
	bool to_exit = opt_bool(env, argv[3], "toSyscallExit");
	size_t n = len / (CALL_WORDS * 8);
	int64_t *results = calloc(n ? n : 1, sizeof(int64_t));
	if (!results)
		return bridge_throw_errno(env, "calloc", ENOMEM, pid, NULL);
	struct user_regs_struct base;
	call_error ce;
	memset(&ce, 0, sizeof(ce));
	size_t done = 0;
	ce.step = "ptrace(PTRACE_GETREGSET)";
	if (!(ce.err = getregs(pid, &base))) {
		for (; done < n; done++) {
			uint64_t call[CALL_WORDS];
			memcpy(call, data + done * CALL_WORDS * 8, sizeof(call));
			if (run_one(pid, tramp, &base, call, to_exit, &results[done], &ce))
				break;
			if (stop_on_error && results[done] < 0 && results[done] > -4096) {
				done++;
				break;
			}
		}
	}
	napi_value out = NULL;
	if (ce.err) {
		char what[200];
		if (ce.fault_sig)
			snprintf(what, sizeof(what),
				 "remoteSyscalls: call %zu (nr %" PRIu64 ") stopped with signal %d at 0x%" PRIx64
				 " instead of the trampoline's trap at 0x%" PRIx64,
				 done, *(uint64_t *)(data + done * CALL_WORDS * 8), ce.fault_sig & 0x7f, ce.fault_ip,
				 tramp + TRAMP_CODE_LEN);
		else
			snprintf(what, sizeof(what), "remoteSyscalls: call %zu: %s", done, ce.step);
		bridge_throw_errno(env, what, ce.err, pid, NULL);
	} else {
		napi_value ab;
		void *mem;
		napi_create_arraybuffer(env, done * sizeof(int64_t), &mem, &ab);
		if (done)
			memcpy(mem, results, done * sizeof(int64_t));
		napi_create_typedarray(env, napi_bigint64_array, done, ab, 0, &out);
	}
	free(results);
	return out;
}

void bridge_init_restore_remote(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "remoteSyscalls", remote_syscalls },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
