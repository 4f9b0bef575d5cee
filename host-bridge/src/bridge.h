/* Shared helpers of the host bridge: argument checks and errors shaped like
 * Node's SystemError (code, errno, syscall, and the pid or path involved). */
#ifndef TSCRIU_BRIDGE_H
#define TSCRIU_BRIDGE_H

#define _GNU_SOURCE
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>

/* Throws an Error with .code ("ESRCH"), .errno (positive), .syscall, and
 * .pid (when pid > 0) or .path (when path != NULL). Returns NULL. */
napi_value bridge_throw_errno(napi_env env, const char *syscall, int err, int pid, const char *path);
/* The same error, returned instead of thrown (to reject a promise with). */
napi_value bridge_errno_error(napi_env env, const char *syscall, int err, int pid, const char *path);

/* Throws a TypeError naming the function and argument. Returns NULL. */
napi_value bridge_throw_arg(napi_env env, const char *fn, const char *what);

/* Argument readers: each returns false after throwing a TypeError. */
bool bridge_get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *fn);
bool bridge_arg_int32(napi_env env, napi_value v, int32_t *out, const char *fn, const char *what);
bool bridge_arg_uint32(napi_env env, napi_value v, uint32_t *out, const char *fn, const char *what);
/* A non-negative integer given as number (safe integer) or bigint. */
bool bridge_arg_u64(napi_env env, napi_value v, uint64_t *out, const char *fn, const char *what);

/* Like bridge_get_args, but accepts between min and max arguments; the missing
 * ones are undefined. *argc_out (may be NULL) gets the count actually passed. */
bool bridge_get_args_range(napi_env env, napi_callback_info info, size_t min, size_t max, napi_value *argv,
			   size_t *argc_out, const char *fn);
/* undefined or null (or a NULL napi_value: "no such argument"). */
bool bridge_is_nullish(napi_env env, napi_value v);
/* Waits until fd is readable; false with errno ETIMEDOUT after timeout_ms (negative: no wait). */
bool bridge_wait_readable(int fd, int32_t timeout_ms);
/* obj[key] into *out when it is there and neither undefined nor null. */
bool bridge_opt_prop(napi_env env, napi_value obj, const char *key, napi_value *out);
/* obj[key] = v */
void bridge_set_u32(napi_env env, napi_value obj, const char *key, uint32_t v);
void bridge_set_i32(napi_env env, napi_value obj, const char *key, int32_t v);
/* A pid/tid: an int32 > 0. */
bool bridge_arg_pid(napi_env env, napi_value v, int32_t *out, const char *fn);
/* A file descriptor: an int32 >= 0. */
bool bridge_arg_fd(napi_env env, napi_value v, int32_t *out, const char *fn, const char *what);
/* A 64-bit machine word: a safe integer (negative ones in two's complement) or a
 * bigint in [-2^63, 2^64). */
bool bridge_arg_word(napi_env env, napi_value v, uint64_t *out, const char *fn, const char *what);
/* The bytes of a TypedArray/Buffer/DataView (any element type) or an ArrayBuffer. */
bool bridge_arg_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len, const char *fn, const char *what);
/* groups of `per` uint64 values (a BigUint64Array): *n groups at *out; false after throwing */
bool bridge_arg_u64s(napi_env env, napi_value v, uint64_t **out, size_t *n, size_t per, const char *fn,
		     const char *what);
/* A string, copied into a malloc'd, NUL-terminated buffer the caller frees. */
bool bridge_arg_string(napi_env env, napi_value v, char **out, const char *fn, const char *what);
/* An optional [offset, offset+length) window inside a byte buffer of size len.
 * off_v/len_v may be undefined: offset defaults to 0, length to the rest. */
bool bridge_arg_window(napi_env env, napi_value off_v, napi_value len_v, size_t buf_len, size_t *off, size_t *n,
		       const char *fn);

napi_value bridge_make_u64(napi_env env, uint64_t v);
napi_value bridge_make_i64(napi_env env, int64_t v);

typedef struct {
	const char *name;
	napi_callback fn;
} bridge_fn;

void bridge_register(napi_env env, napi_value exports, const bridge_fn *fns, size_t n);

/* Queues execute, then complete, on libuv's thread pool for `data`, whose async work and
 * deferred are stored in *work and *deferred (complete resolves or rejects, and deletes
 * the work). Returns the promise, or NULL after throwing: nothing was queued, and the
 * caller frees what data holds. */
napi_value bridge_queue_job(napi_env env, const char *name, napi_async_execute_callback execute,
			    napi_async_complete_callback complete, void *data, napi_async_work *work,
			    napi_deferred *deferred);

/* one(ctx, i) for each i below n: the second half on a thread of its own from 16 items on
 * (on the caller's alone where a thread cannot be made). A batch of a server's thousand
 * sockets spends its time in kernel calls, which two threads share out. */
void bridge_on_two_threads(size_t n, void (*one)(void *ctx, size_t i), void *ctx);

/* Per-area registration, one per source file. */
void bridge_init_files(napi_env env, napi_value exports);
void bridge_init_anonfd(napi_env env, napi_value exports);
void bridge_init_mount(napi_env env, napi_value exports);
void bridge_init_cpu(napi_env env, napi_value exports);
void bridge_init_ptrace(napi_env env, napi_value exports);
void bridge_init_regset(napi_env env, napi_value exports);
void bridge_init_remote(napi_env env, napi_value exports);
void bridge_init_memory(napi_env env, napi_value exports);
void bridge_init_uffd_wp(napi_env env, napi_value exports);
void bridge_init_uffd_track(napi_env env, napi_value exports);
void bridge_init_syscall_watch(napi_env env, napi_value exports);
void bridge_init_packet(napi_env env, napi_value exports);
void bridge_init_pagemap(napi_env env, napi_value exports);
void bridge_init_pidfd(napi_env env, napi_value exports);
void bridge_init_spawn(napi_env env, napi_value exports);
void bridge_init_dumpsys(napi_env env, napi_value exports);
void bridge_init_tty(napi_env env, napi_value exports);
void bridge_init_pty(napi_env env, napi_value exports);
void bridge_init_sockets(napi_env env, napi_value exports);
void bridge_init_sockfilter(napi_env env, napi_value exports);

/* Shared by the socket kinds (sockets.c): a Buffer holding a copy of `len` bytes, and one
 * sock_diag dump (NETLINK_SOCK_DIAG): `req` (`req_len` bytes after the netlink header) is
 * sent, and every answer of at least `min_len` bytes becomes an element of the returned
 * array through `entry` (given `ctx`; an entry that gives NULL adds none: it kept the
 * answer in `ctx` itself); NULL with an exception pending on failure. */
struct nlmsghdr;
typedef napi_value (*bridge_diag_entry)(napi_env env, const struct nlmsghdr *h, void *ctx);
napi_value bridge_make_buffer(napi_env env, const void *data, size_t len);
/* An fd's owner (F_GETOWN_EX type and pid, F_GETSIG, F_GETOWNER_UIDS uid and euid): 0, or
 * the errno of the call named in *call (dumpsys.c). */
int bridge_fd_owner(int fd, int32_t out[5], const char **call);
napi_value bridge_sock_diag(napi_env env, const void *req, size_t req_len, size_t min_len, bridge_diag_entry entry,
			    void *ctx);
void bridge_init_unix(napi_env env, napi_value exports);
void bridge_init_inet(napi_env env, napi_value exports);
void bridge_init_tcp_repair(napi_env env, napi_value exports);
void bridge_init_rpc(napi_env env, napi_value exports);
void bridge_init_restore(napi_env env, napi_value exports);
void bridge_init_lazy(napi_env env, napi_value exports);
void bridge_init_prefault(napi_env env, napi_value exports);

/* Shared between ptrace.c and remote.c. */

/* waitpid(pid, __WALL | flags) retried on EINTR. timeout_ms < 0 blocks; otherwise
 * polls with WNOHANG and a growing back-off. Returns the pid, 0 on timeout (or
 * WNOHANG with nothing to report), -1 with errno set. */
int bridge_wait(int pid, int flags, int64_t timeout_ms, int *status);
/* The x86_64 user_regs_struct, as NT_PRSTATUS carries it. */
#define BRIDGE_REGS_SIZE 216

#endif
