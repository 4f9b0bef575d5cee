/* restoreSpawn: start the restore stub (host-bridge/stub/stub.c) as the
 * process that becomes the restored task, with the dumped PID.
 *
 * The child is made with clone3(CLONE_VM | CLONE_VFORK) on a stack of its own
 * -- a fork of a large Node process costs 12-17 ms of page-table copying, a
 * vfork nothing -- and `set_tid` gives it the dumped PID (EEXIST when that PID
 * is in use). Sharing Node's memory, the child may only make raw syscalls on
 * data prepared beforehand: it resets every signal disposition (SIG_IGN would
 * survive exec), sets up its session, enters a new time namespace whose clocks
 * continue from the dump (criu does the same with timens-0.img), closes every
 * fd and execs the stub. CLONE_VFORK holds this thread until the exec, so on
 * return the stub runs (or the child reported why it could not).
 *
 * Three places in the process tree, as criu's -d/-S options ask:
 *   child     the task is a child of this process (restore without -d)
 *   sibling   a child of this process's parent (CLONE_PARENT, -S)
 *   detached  a child of a new subreaper (the stub in "reap" mode) that
 *             outlives us and reaps the task at once when it dies (-d); the
 *             subreaper is orphaned through a short-lived middle process,
 *             which we reap here, so it does not stay our child. */
#include "restore.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PR_SET_CHILD_SUBREAPER 36
#define STACK_SIZE	       (64 * 1024)

struct clone_args_v2 {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size;
};

enum spawn_mode { MODE_CHILD, MODE_SIBLING, MODE_DETACHED };
enum spawn_session { SESSION_INHERIT, SESSION_SETSID, SESSION_SETPGID };

/* Everything the children need, prepared by the parent: they only read it and
 * write their results back (the memory is shared). */
struct spawn_plan {
	char *stub;
	char *argv_target[2];
	char *argv_reap[3];
	char *envp[1];
	int64_t set_tid;
	int mode, session;
	bool timens;
	int64_t mono_ns, boot_ns;
	char *stacks[3];
	/* results */
	int err;
	const char *stage;
	int target, reaper;
};

/* clone3 running fn(arg) on the new stack in the child, which then exits with
 * its return value; the parent gets the pid or -errno. In the child every
 * register but rax/rcx/r11 keeps the parent's value, so fn and arg travel in
 * callee-saved r12/r13 (as glibc's clone does). */
static long clone3_run(struct clone_args_v2 *args, int (*fn)(struct spawn_plan *), struct spawn_plan *arg)
{
	long ret;
	register void *r12 __asm__("r12") = (void *)fn;
	register void *r13 __asm__("r13") = arg;
	__asm__ volatile("syscall\n\t"
			 "test %%rax, %%rax\n\t"
			 "jnz 1f\n\t"
			 "xor %%ebp, %%ebp\n\t"
			 "mov %%r13, %%rdi\n\t"
			 "call *%%r12\n\t"
			 "mov %%eax, %%edi\n\t"
			 "mov $60, %%eax\n\t"
			 "syscall\n\t"
			 "ud2\n"
			 "1:\n\t"
			 : "=a"(ret)
			 : "a"((long)SYS_clone3), "D"(args), "S"(sizeof(*args)), "r"(r12), "r"(r13)
			 : "rcx", "r11", "memory");
	return ret;
}

static int fail(struct spawn_plan *p, const char *stage, long r)
{
	p->stage = stage;
	p->err = (int)-r;
	return 127;
}

static void default_signals(void)
{
	struct {
		void *handler;
		unsigned long flags;
		void *restorer;
		uint64_t mask;
	} dfl = { SIG_DFL, 0, NULL, 0 };
	for (int sig = 1; sig <= 64; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			restore_raw6(SYS_rt_sigaction, sig, (long)&dfl, 0, sizeof(dfl.mask), 0, 0);
}

/* The task-to-be: session, time namespace, no fds, exec the stub. */
static int target_child(struct spawn_plan *p)
{
	long r;
	default_signals();
	if (p->session == SESSION_SETSID && (r = restore_raw6(SYS_setsid, 0, 0, 0, 0, 0, 0)) < 0)
		return fail(p, "setsid", r);
	if (p->session == SESSION_SETPGID && (r = restore_raw6(SYS_setpgid, 0, 0, 0, 0, 0, 0)) < 0)
		return fail(p, "setpgid", r);
	const char *stage = NULL;
	if (p->timens && (r = restore_enter_timens(p->mono_ns, p->boot_ns, &stage)) < 0)
		return fail(p, stage, r);
	if ((r = restore_raw6(SYS_close_range, 0, ~0U, 0, 0, 0, 0)) < 0)
		return fail(p, "close_range", r);
	r = restore_raw6(SYS_execve, (long)p->stub, (long)p->argv_target, (long)p->envp, 0, 0, 0);
	return fail(p, "execve", r);
}

static long start_target(struct spawn_plan *p, uint64_t extra_flags, int stack)
{
	struct clone_args_v2 args;
	memset(&args, 0, sizeof(args));
	args.flags = CLONE_VM | CLONE_VFORK | extra_flags;
	/* clone3 refuses an exit signal with CLONE_PARENT: the sibling gets ours. */
	args.exit_signal = extra_flags & CLONE_PARENT ? 0 : SIGCHLD;
	args.stack = (uint64_t)(uintptr_t)p->stacks[stack];
	args.stack_size = STACK_SIZE;
	if (p->set_tid > 0) {
		args.set_tid = (uint64_t)(uintptr_t)&p->set_tid;
		args.set_tid_size = 1;
	}
	return clone3_run(&args, target_child, p);
}

/* The subreaper of a detached restore: starts the target, then becomes the
 * stub in "reap" mode. */
static int reaper_child(struct spawn_plan *p)
{
	default_signals();
	long r = restore_raw6(SYS_prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0, 0);
	if (r < 0)
		return fail(p, "prctl(PR_SET_CHILD_SUBREAPER)", r);
	r = start_target(p, 0, 2);
	if (r < 0)
		return fail(p, "clone3", r);
	if (p->err) {
		/* The target reported its own failure and exited: free its PID now. */
		restore_raw6(SYS_wait4, r, 0, __WALL, 0, 0, 0);
		return 127;
	}
	p->target = (int)r;
	p->reaper = (int)restore_raw6(SYS_getpid, 0, 0, 0, 0, 0, 0);
	restore_raw6(SYS_close_range, 0, ~0U, 0, 0, 0, 0);
	r = restore_raw6(SYS_execve, (long)p->stub, (long)p->argv_reap, (long)p->envp, 0, 0, 0);
	restore_raw6(SYS_kill, p->target, SIGKILL, 0, 0, 0, 0);
	p->target = 0;
	return fail(p, "execve (reaper)", r);
}

/* Starts the reaper and exits, so that the reaper is orphaned. */
static int middle_child(struct spawn_plan *p)
{
	struct clone_args_v2 args;
	memset(&args, 0, sizeof(args));
	args.flags = CLONE_VM | CLONE_VFORK;
	args.exit_signal = SIGCHLD;
	args.stack = (uint64_t)(uintptr_t)p->stacks[1];
	args.stack_size = STACK_SIZE;
	long r = clone3_run(&args, reaper_child, p);
	if (r < 0)
		return fail(p, "clone3 (reaper)", r);
	return 0;
}

static bool get_choice(napi_env env, napi_value obj, const char *key, const char *const *names, int *out,
		       const char *what)
{
	napi_value v;
	char buf[32];
	size_t len = 0;
	if (!bridge_opt_prop(env, obj, key, &v))
		return true; /* keep the default */
	if (napi_get_value_string_utf8(env, v, buf, sizeof(buf), &len) == napi_ok)
		for (int i = 0; names[i]; i++)
			if (strcmp(buf, names[i]) == 0) {
				*out = i;
				return true;
			}
	bridge_throw_arg(env, "restoreSpawn", what);
	return false;
}

static bool get_i64(napi_env env, napi_value obj, const char *key, int64_t *out, const char *what)
{
	napi_value v;
	bool lossless = false;
	if (!bridge_opt_prop(env, obj, key, &v) || napi_get_value_bigint_int64(env, v, out, &lossless) != napi_ok) {
		bridge_throw_arg(env, "restoreSpawn", what);
		return false;
	}
	return true;
}

static napi_value make_result(napi_env env, int target, int reaper)
{
	napi_value res, v;
	napi_create_object(env, &res);
	napi_create_int32(env, target, &v);
	napi_set_named_property(env, res, "pid", v);
	napi_create_int32(env, reaper, &v);
	napi_set_named_property(env, res, "reaper", v);
	return res;
}

static napi_value restore_spawn(napi_env env, napi_callback_info info)
{
	const char *fn = "restoreSpawn";
	static const char *const modes[] = { "child", "sibling", "detached", NULL };
	static const char *const sessions[] = { "inherit", "setsid", "setpgid", NULL };
	napi_value argv[1], v;
	napi_valuetype t;
	if (!bridge_get_args(env, info, 1, argv, fn))
		return NULL;
	if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_object)
		return bridge_throw_arg(env, fn, "options must be an object");
	struct spawn_plan p;
	memset(&p, 0, sizeof(p));
	napi_value result = NULL;
	if (!bridge_opt_prop(env, argv[0], "stub", &v))
		return bridge_throw_arg(env, fn, "options.stub is required");
	if (!bridge_arg_string(env, v, &p.stub, fn, "options.stub must be the path of the stub"))
		return NULL;
	int32_t pid = 0;
	if (bridge_opt_prop(env, argv[0], "pid", &v) &&
	    !bridge_arg_int32(env, v, &pid, fn, "options.pid must be an int32 (0: any pid)"))
		goto out;
	if (pid < 0) {
		bridge_throw_arg(env, fn, "options.pid must be >= 0");
		goto out;
	}
	p.set_tid = pid;
	if (!get_choice(env, argv[0], "mode", modes, &p.mode, "options.mode must be child, sibling or detached") ||
	    !get_choice(env, argv[0], "session", sessions, &p.session,
			"options.session must be inherit, setsid or setpgid"))
		goto out;
	if (bridge_opt_prop(env, argv[0], "timens", &v)) {
		if (!get_i64(env, v, "monotonicNs", &p.mono_ns, "options.timens.monotonicNs must be a bigint") ||
		    !get_i64(env, v, "boottimeNs", &p.boot_ns, "options.timens.boottimeNs must be a bigint"))
			goto out;
		p.timens = true;
	}
	p.argv_target[0] = "tscriu_stub";
	p.argv_reap[0] = "tscriu_stub";
	p.argv_reap[1] = "reap";
	for (int i = 0; i < 3; i++) {
		p.stacks[i] = malloc(STACK_SIZE);
		if (!p.stacks[i]) {
			bridge_throw_errno(env, "malloc", ENOMEM, 0, NULL);
			goto out;
		}
	}

	/* No signal handler of Node may run in a child that shares its memory. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	long r;
	if (p.mode == MODE_DETACHED) {
		struct clone_args_v2 args;
		memset(&args, 0, sizeof(args));
		args.flags = CLONE_VM | CLONE_VFORK;
		args.exit_signal = SIGCHLD;
		args.stack = (uint64_t)(uintptr_t)p.stacks[0];
		args.stack_size = STACK_SIZE;
		r = clone3_run(&args, middle_child, &p);
		if (r > 0) {
			int st;
			while (waitpid((pid_t)r, &st, __WALL) < 0 && errno == EINTR)
				;
		}
	} else {
		r = start_target(&p, p.mode == MODE_SIBLING ? CLONE_PARENT : 0, 0);
		if (r > 0 && p.err && p.mode == MODE_CHILD) {
			int st;
			while (waitpid((pid_t)r, &st, __WALL) < 0 && errno == EINTR)
				;
		} else if (r > 0) {
			p.target = (int)r;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);

	char what[160];
	if (r < 0) {
		snprintf(what, sizeof(what), "restoreSpawn: clone3 (set_tid %d)", pid);
		bridge_throw_errno(env, what, (int)-r, pid, NULL);
	} else if (p.err) {
		snprintf(what, sizeof(what), "restoreSpawn: %s (set_tid %d)", p.stage ? p.stage : "?", pid);
		bridge_throw_errno(env, what, p.err, pid, p.err == ENOENT || p.err == EACCES ? p.stub : NULL);
	} else {
		result = make_result(env, p.target, p.reaper);
	}
out:
	for (int i = 0; i < 3; i++)
		free(p.stacks[i]);
	free(p.stub);
	return result;
}

void bridge_init_restore(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "restoreSpawn", restore_spawn },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
	bridge_init_restore_remote(env, exports);
	bridge_init_restore_pages(env, exports);
	bridge_init_restore_uffd(env, exports);
}
