/* ptrace control: seize, interrupt, resume, detach, wait, and word access.
 *
 * Every call for a tracee must come from the OS thread that seized it (the
 * kernel ties the tracer to a thread, not a process), so these functions are
 * synchronous and meant for the main JS thread; see DESIGN.md. */
#include "bridge.h"

#include <errno.h>
#include <string.h>
#include <sched.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>

int bridge_wait(int pid, int flags, int64_t timeout_ms, int *status)
{
	flags |= __WALL;
	if (timeout_ms < 0 || (flags & WNOHANG)) {
		int r;
		do
			r = waitpid(pid, status, flags);
		while (r < 0 && errno == EINTR);
		return r;
	}
	/* A stop is not visible through a pidfd, so a bounded wait has to poll. Spin
	 * on sched_yield first: a remote syscall completes within ~20-120 us, and a
	 * sleep there would multiply its cost. */
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	long backoff_ns = 10000;
	for (unsigned i = 0;; i++) {
		int r = waitpid(pid, status, flags | WNOHANG);
		if (r != 0 && !(r < 0 && errno == EINTR))
			return r;
		clock_gettime(CLOCK_MONOTONIC, &now);
		int64_t elapsed_ms =
		    (int64_t)(now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (elapsed_ms >= timeout_ms)
			return 0;
		if (i < 200) {
			sched_yield();
			continue;
		}
		struct timespec ts = { 0, backoff_ns };
		nanosleep(&ts, NULL);
		if (backoff_ns < 2000000)
			backoff_ns *= 2;
	}
}

static napi_value make_bool(napi_env env, bool b)
{
	napi_value v;
	napi_get_boolean(env, b, &v);
	return v;
}

static napi_value make_int(napi_env env, int32_t i)
{
	napi_value v;
	napi_create_int32(env, i, &v);
	return v;
}

/* Reads a signal number argument: optional, 0..64. */
static bool arg_sig(napi_env env, napi_value v, int32_t *sig, const char *fn)
{
	*sig = 0;
	if (bridge_is_nullish(env, v))
		return true;
	if (!bridge_arg_int32(env, v, sig, fn, "signal must be an int32 in 0..64"))
		return false;
	if (*sig < 0 || *sig > 64) {
		bridge_throw_arg(env, fn, "signal must be an int32 in 0..64");
		return false;
	}
	return true;
}

static napi_value seize(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	int32_t pid;
	uint32_t opts = 0;
	if (!bridge_get_args_range(env, info, 1, 2, argv, NULL, "ptraceSeize") ||
	    !bridge_arg_pid(env, argv[0], &pid, "ptraceSeize"))
		return NULL;
	if (!bridge_is_nullish(env, argv[1]) &&
	    !bridge_arg_uint32(env, argv[1], &opts, "ptraceSeize", "options must be a uint32 (PTRACE_O_* bits)"))
		return NULL;
	if (ptrace(PTRACE_SEIZE, pid, NULL, (void *)(uintptr_t)opts) < 0)
		return bridge_throw_errno(env, "ptrace(PTRACE_SEIZE)", errno, pid, NULL);
	return NULL;
}

static napi_value set_options(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	int32_t pid;
	uint32_t opts;
	if (!bridge_get_args(env, info, 2, argv, "ptraceSetOptions") ||
	    !bridge_arg_pid(env, argv[0], &pid, "ptraceSetOptions") ||
	    !bridge_arg_uint32(env, argv[1], &opts, "ptraceSetOptions", "options must be a uint32 (PTRACE_O_* bits)"))
		return NULL;
	if (ptrace(PTRACE_SETOPTIONS, pid, NULL, (void *)(uintptr_t)opts) < 0)
		return bridge_throw_errno(env, "ptrace(PTRACE_SETOPTIONS)", errno, pid, NULL);
	return NULL;
}

static napi_value interrupt(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	int32_t pid;
	if (!bridge_get_args(env, info, 1, argv, "ptraceInterrupt") ||
	    !bridge_arg_pid(env, argv[0], &pid, "ptraceInterrupt"))
		return NULL;
	if (ptrace(PTRACE_INTERRUPT, pid, NULL, NULL) < 0)
		return bridge_throw_errno(env, "ptrace(PTRACE_INTERRUPT)", errno, pid, NULL);
	return NULL;
}

/* PTRACE_CONT / PTRACE_DETACH / PTRACE_SYSCALL / PTRACE_LISTEN: (pid, sig?). */
static napi_value resume_common(napi_env env, napi_callback_info info, enum __ptrace_request req, const char *fn,
				const char *syscall)
{
	napi_value argv[2];
	int32_t pid, sig;
	if (!bridge_get_args_range(env, info, 1, 2, argv, NULL, fn) || !bridge_arg_pid(env, argv[0], &pid, fn) ||
	    !arg_sig(env, argv[1], &sig, fn))
		return NULL;
	if (ptrace(req, pid, NULL, (void *)(uintptr_t)sig) < 0)
		return bridge_throw_errno(env, syscall, errno, pid, NULL);
	return NULL;
}

static napi_value cont(napi_env env, napi_callback_info info)
{
	return resume_common(env, info, PTRACE_CONT, "ptraceCont", "ptrace(PTRACE_CONT)");
}

static napi_value detach(napi_env env, napi_callback_info info)
{
	return resume_common(env, info, PTRACE_DETACH, "ptraceDetach", "ptrace(PTRACE_DETACH)");
}

static napi_value syscall_(napi_env env, napi_callback_info info)
{
	return resume_common(env, info, PTRACE_SYSCALL, "ptraceSyscall", "ptrace(PTRACE_SYSCALL)");
}

static napi_value listen_(napi_env env, napi_callback_info info)
{
	return resume_common(env, info, PTRACE_LISTEN, "ptraceListen", "ptrace(PTRACE_LISTEN)");
}

static napi_value wait_(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	int32_t pid, flags = 0;
	int64_t timeout = -1;
	if (!bridge_get_args_range(env, info, 1, 3, argv, NULL, "waitpid") ||
	    !bridge_arg_int32(env, argv[0], &pid, "waitpid", "pid must be an int32"))
		return NULL;
	if (!bridge_is_nullish(env, argv[1]) &&
	    !bridge_arg_int32(env, argv[1], &flags, "waitpid", "flags must be an int32 (WNOHANG, __WNOTHREAD, ...)"))
		return NULL;
	if (!bridge_is_nullish(env, argv[2])) {
		uint32_t t;
		if (!bridge_arg_uint32(env, argv[2], &t, "waitpid", "timeoutMs must be a uint32"))
			return NULL;
		timeout = t;
	}
	int status = 0;
	int r = bridge_wait(pid, flags, timeout, &status);
	if (r < 0)
		return bridge_throw_errno(env, "waitpid", errno, pid > 0 ? pid : 0, NULL);
	napi_value res;
	if (r == 0) {
		napi_get_null(env, &res);
		return res;
	}
	bool stopped = WIFSTOPPED(status);
	napi_create_object(env, &res);
	napi_set_named_property(env, res, "pid", make_int(env, r));
	napi_set_named_property(env, res, "status", make_int(env, status));
	napi_set_named_property(env, res, "exited", make_bool(env, WIFEXITED(status)));
	napi_set_named_property(env, res, "code", make_int(env, WIFEXITED(status) ? WEXITSTATUS(status) : 0));
	napi_set_named_property(env, res, "signaled", make_bool(env, WIFSIGNALED(status)));
	napi_set_named_property(env, res, "signal", make_int(env, WIFSIGNALED(status) ? WTERMSIG(status) : 0));
	napi_set_named_property(env, res, "coreDumped", make_bool(env, WIFSIGNALED(status) && WCOREDUMP(status)));
	napi_set_named_property(env, res, "stopped", make_bool(env, stopped));
	napi_set_named_property(env, res, "stopSig", make_int(env, stopped ? WSTOPSIG(status) : 0));
	napi_set_named_property(env, res, "event", make_int(env, stopped ? (status >> 16) & 0xff : 0));
	return res;
}

static napi_value peek_data(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	int32_t pid;
	uint64_t addr;
	if (!bridge_get_args(env, info, 2, argv, "ptracePeekData") ||
	    !bridge_arg_pid(env, argv[0], &pid, "ptracePeekData") ||
	    !bridge_arg_u64(env, argv[1], &addr, "ptracePeekData", "addr must be a non-negative integer"))
		return NULL;
	errno = 0;
	long w = ptrace(PTRACE_PEEKDATA, pid, (void *)(uintptr_t)addr, NULL);
	if (w == -1 && errno)
		return bridge_throw_errno(env, "ptrace(PTRACE_PEEKDATA)", errno, pid, NULL);
	napi_value r;
	napi_create_bigint_uint64(env, (uint64_t)w, &r);
	return r;
}

static napi_value poke_data(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	int32_t pid;
	uint64_t addr, word;
	if (!bridge_get_args(env, info, 3, argv, "ptracePokeData") ||
	    !bridge_arg_pid(env, argv[0], &pid, "ptracePokeData") ||
	    !bridge_arg_u64(env, argv[1], &addr, "ptracePokeData", "addr must be a non-negative integer") ||
	    !bridge_arg_word(env, argv[2], &word, "ptracePokeData", "word must be an integer or bigint of 64 bits"))
		return NULL;
	if (ptrace(PTRACE_POKEDATA, pid, (void *)(uintptr_t)addr, (void *)(uintptr_t)word) < 0)
		return bridge_throw_errno(env, "ptrace(PTRACE_POKEDATA)", errno, pid, NULL);
	return NULL;
}

static napi_value get_event_msg(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	int32_t pid;
	if (!bridge_get_args(env, info, 1, argv, "ptraceGetEventMsg") ||
	    !bridge_arg_pid(env, argv[0], &pid, "ptraceGetEventMsg"))
		return NULL;
	unsigned long msg = 0;
	if (ptrace(PTRACE_GETEVENTMSG, pid, NULL, &msg) < 0)
		return bridge_throw_errno(env, "ptrace(PTRACE_GETEVENTMSG)", errno, pid, NULL);
	return bridge_make_u64(env, msg);
}

/* ptraceStopSignal(pid): the signal of the stop a seized tracee reports (PTRACE_GETSIGINFO's
 * si_signo): for a task that was in a group-stop, the signal that stopped it. */
static napi_value stop_signal(napi_env env, napi_callback_info info)
{
	napi_value argv[1], r;
	int32_t pid;
	if (!bridge_get_args(env, info, 1, argv, "ptraceStopSignal") ||
	    !bridge_arg_pid(env, argv[0], &pid, "ptraceStopSignal"))
		return NULL;
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	if (ptrace(PTRACE_GETSIGINFO, pid, NULL, &si) < 0)
		return bridge_throw_errno(env, "ptrace(PTRACE_GETSIGINFO)", errno, pid, NULL);
	napi_create_int32(env, si.si_signo, &r);
	return r;
}

void bridge_init_ptrace(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "ptraceSeize", seize },
		{ "ptraceSetOptions", set_options },
		{ "ptraceInterrupt", interrupt },
		{ "ptraceCont", cont },
		{ "ptraceDetach", detach },
		{ "ptraceSyscall", syscall_ },
		{ "ptraceListen", listen_ },
		{ "ptracePeekData", peek_data },
		{ "ptracePokeData", poke_data },
		{ "ptraceGetEventMsg", get_event_msg },
		{ "ptraceStopSignal", stop_signal },
		{ "waitpid", wait_ },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
