/* Per-thread state of a stopped tracee read and written through ptrace:
 * general registers, FPU/xsave, signal mask, pending signals, rseq.
 *
 * Register sets travel as Buffers holding the exact kernel layout, because the
 * image writer stores them field by field and restore hands them back verbatim;
 * host-bridge/regs.ts gives the named view. */
#include "bridge.h"

#include <cpuid.h>
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>

#define FPREGS_SIZE    512 /* struct user_fpregs_struct (fxsave layout) */
#define I386_REGS_SIZE 68  /* struct user_regs_struct of a 32-bit (compat) task */

static napi_value get_regset(napi_env env, int pid, int type, size_t size, const char *syscall)
{
	void *buf = calloc(1, size);
	if (!buf)
		return bridge_throw_errno(env, "calloc", ENOMEM, pid, NULL);
	struct iovec iov = { buf, size };
	if (ptrace(PTRACE_GETREGSET, pid, (void *)(uintptr_t)type, &iov) < 0) {
		int err = errno;
		free(buf);
		return bridge_throw_errno(env, syscall, err, pid, NULL);
	}
	napi_value r;
	/* iov_len comes back as what the kernel filled: 68 bytes of i386 regs for a
	 * compat task, the xsave size the kernel uses for NT_X86_XSTATE. */
	napi_create_buffer_copy(env, iov.iov_len, buf, NULL, &r);
	free(buf);
	return r;
}

/* want: the required size, or 0 for any; alt: a second accepted size, or 0. */
static napi_value set_regset(napi_env env, napi_callback_info info, int type, size_t want, size_t alt, const char *fn,
			     const char *syscall)
{
	napi_value argv[2];
	int32_t pid;
	uint8_t *data;
	size_t len;
	if (!bridge_get_args(env, info, 2, argv, fn) || !bridge_arg_pid(env, argv[0], &pid, fn) ||
	    !bridge_arg_bytes(env, argv[1], &data, &len, fn, "regs must be a Buffer/TypedArray"))
		return NULL;
	if (want && len != want && len != alt) {
		char what[96];
		snprintf(what, sizeof(what), "regs must be exactly %zu bytes, got %zu", want, len);
		return bridge_throw_arg(env, fn, what);
	}
	if (len == 0)
		return bridge_throw_arg(env, fn, "regs must not be empty");
	struct iovec iov = { data, len };
	if (ptrace(PTRACE_SETREGSET, pid, (void *)(uintptr_t)type, &iov) < 0)
		return bridge_throw_errno(env, syscall, errno, pid, NULL);
	return NULL;
}

static bool one_pid(napi_env env, napi_callback_info info, int32_t *pid, const char *fn)
{
	napi_value argv[1];
	return bridge_get_args(env, info, 1, argv, fn) && bridge_arg_pid(env, argv[0], pid, fn);
}

static napi_value get_regs(napi_env env, napi_callback_info info)
{
	int32_t pid;
	if (!one_pid(env, info, &pid, "getRegs"))
		return NULL;
	return get_regset(env, pid, NT_PRSTATUS, BRIDGE_REGS_SIZE, "ptrace(PTRACE_GETREGSET, NT_PRSTATUS)");
}

static napi_value set_regs(napi_env env, napi_callback_info info)
{
	return set_regset(env, info, NT_PRSTATUS, BRIDGE_REGS_SIZE, I386_REGS_SIZE, "setRegs",
			  "ptrace(PTRACE_SETREGSET, NT_PRSTATUS)");
}

static napi_value get_fpregs(napi_env env, napi_callback_info info)
{
	int32_t pid;
	if (!one_pid(env, info, &pid, "getFpregs"))
		return NULL;
	return get_regset(env, pid, NT_PRFPREG, FPREGS_SIZE, "ptrace(PTRACE_GETREGSET, NT_PRFPREG)");
}

static napi_value set_fpregs(napi_env env, napi_callback_info info)
{
	return set_regset(env, info, NT_PRFPREG, FPREGS_SIZE, 0, "setFpregs", "ptrace(PTRACE_SETREGSET, NT_PRFPREG)");
}

/* The largest xsave area this CPU can need: CPUID.(EAX=0xd,ECX=0) gives in EBX the
 * size for the features enabled in XCR0 and in ECX the size for all supported
 * ones. The kernel copies at most its own size and reports it in iov_len. */
static size_t xstate_size(void)
{
	unsigned int a, b, c, d;
	if (!__get_cpuid_count(0xd, 0, &a, &b, &c, &d))
		return 4096;
	size_t n = b > c ? b : c;
	return n < FPREGS_SIZE + 64 ? 4096 : n;
}

static napi_value get_xstate(napi_env env, napi_callback_info info)
{
	int32_t pid;
	if (!one_pid(env, info, &pid, "getXstate"))
		return NULL;
	return get_regset(env, pid, NT_X86_XSTATE, xstate_size(), "ptrace(PTRACE_GETREGSET, NT_X86_XSTATE)");
}

static napi_value set_xstate(napi_env env, napi_callback_info info)
{
	return set_regset(env, info, NT_X86_XSTATE, 0, 0, "setXstate", "ptrace(PTRACE_SETREGSET, NT_X86_XSTATE)");
}

static napi_value get_sigmask(napi_env env, napi_callback_info info)
{
	int32_t pid;
	if (!one_pid(env, info, &pid, "getSigmask"))
		return NULL;
	uint64_t mask = 0;
	if (ptrace(PTRACE_GETSIGMASK, pid, (void *)sizeof(mask), &mask) < 0)
		return bridge_throw_errno(env, "ptrace(PTRACE_GETSIGMASK)", errno, pid, NULL);
	napi_value r;
	napi_create_bigint_uint64(env, mask, &r);
	return r;
}

static napi_value set_sigmask(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	int32_t pid;
	uint64_t mask;
	if (!bridge_get_args(env, info, 2, argv, "setSigmask") || !bridge_arg_pid(env, argv[0], &pid, "setSigmask") ||
	    !bridge_arg_word(env, argv[1], &mask, "setSigmask", "mask must be a 64-bit integer or bigint"))
		return NULL;
	if (ptrace(PTRACE_SETSIGMASK, pid, (void *)sizeof(mask), &mask) < 0)
		return bridge_throw_errno(env, "ptrace(PTRACE_SETSIGMASK)", errno, pid, NULL);
	return NULL;
}

#define SIGINFO_SIZE 128
#define PEEK_BATCH   32

static napi_value peek_siginfo(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	int32_t pid;
	bool shared = false;
	if (!bridge_get_args_range(env, info, 1, 2, argv, NULL, "peekSiginfo") ||
	    !bridge_arg_pid(env, argv[0], &pid, "peekSiginfo"))
		return NULL;
	if (!bridge_is_nullish(env, argv[1])) {
		napi_valuetype t;
		if (napi_typeof(env, argv[1], &t) != napi_ok || t != napi_boolean)
			return bridge_throw_arg(env, "peekSiginfo", "shared must be a boolean");
		napi_get_value_bool(env, argv[1], &shared);
	}
	napi_value arr;
	napi_create_array(env, &arr);
	uint8_t buf[PEEK_BATCH * SIGINFO_SIZE];
	struct __ptrace_peeksiginfo_args args = {
		.off = 0,
		.flags = shared ? PTRACE_PEEKSIGINFO_SHARED : 0,
		.nr = PEEK_BATCH,
	};
	uint32_t n = 0;
	for (;;) {
		long r = ptrace(PTRACE_PEEKSIGINFO, pid, &args, buf);
		if (r < 0)
			return bridge_throw_errno(env, "ptrace(PTRACE_PEEKSIGINFO)", errno, pid, NULL);
		if (r == 0)
			break;
		for (long i = 0; i < r; i++) {
			napi_value b;
			napi_create_buffer_copy(env, SIGINFO_SIZE, buf + i * SIGINFO_SIZE, NULL, &b);
			napi_set_element(env, arr, n++, b);
		}
		args.off += (uint64_t)r;
	}
	return arr;
}

static napi_value get_rseq(napi_env env, napi_callback_info info)
{
	int32_t pid;
	if (!one_pid(env, info, &pid, "getRseqConfiguration"))
		return NULL;
	struct __ptrace_rseq_configuration conf;
	memset(&conf, 0, sizeof(conf));
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, pid, (void *)sizeof(conf), &conf) < 0)
		return bridge_throw_errno(env, "ptrace(PTRACE_GET_RSEQ_CONFIGURATION)", errno, pid, NULL);
	napi_value r, v;
	napi_create_object(env, &r);
	napi_create_bigint_uint64(env, conf.rseq_abi_pointer, &v);
	napi_set_named_property(env, r, "rseqAbiPointer", v);
	napi_create_uint32(env, conf.rseq_abi_size, &v);
	napi_set_named_property(env, r, "rseqAbiSize", v);
	napi_create_uint32(env, conf.signature, &v);
	napi_set_named_property(env, r, "signature", v);
	napi_create_uint32(env, conf.flags, &v);
	napi_set_named_property(env, r, "flags", v);
	return r;
}

void bridge_init_regset(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "getRegs", get_regs },	 { "setRegs", set_regs },
		{ "getFpregs", get_fpregs },	 { "setFpregs", set_fpregs },
		{ "getXstate", get_xstate },	 { "setXstate", set_xstate },
		{ "getSigmask", get_sigmask },	 { "setSigmask", set_sigmask },
		{ "peekSiginfo", peek_siginfo }, { "getRseqConfiguration", get_rseq },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
