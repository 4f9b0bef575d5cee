/* Classic BPF socket filters (SO_ATTACH_FILTER): read back with SO_GET_FILTER at
 * dump, attached again at restore. The instructions travel as the kernel's own
 * struct sock_filter array; orchestrator/fds/sockopts.ts packs them as criu does. */
#include "bridge.h"

#include <errno.h>
#include <linux/filter.h>
#include <stdlib.h>
#include <sys/socket.h>

#ifndef SO_GET_FILTER
#define SO_GET_FILTER SO_ATTACH_FILTER
#endif

/* getSocketFilter(fd): the attached classic filter's instructions (8 bytes each),
 * empty when none. SO_GET_FILTER counts its length in instructions, not bytes:
 * asked with 0 it tells the count; an eBPF program (SO_ATTACH_BPF) has no classic
 * form to give back and fails with EACCES. */
static napi_value get_socket_filter(napi_env env, napi_callback_info info)
{
	const char *fn = "getSocketFilter";
	napi_value argv[1];
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32"))
		return NULL;
	socklen_t n = 0;
	if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &n) < 0)
		return bridge_throw_errno(env, "getsockopt(SO_GET_FILTER)", errno, 0, NULL);
	static const struct sock_filter none;
	if (n == 0)
		return bridge_make_buffer(env, &none, 0);
	if (n > BPF_MAXINSNS)
		return bridge_throw_errno(env, "getsockopt(SO_GET_FILTER)", E2BIG, 0, NULL);
	struct sock_filter *f = calloc(n, sizeof(*f));
	if (!f)
		return bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
	socklen_t got = n;
	napi_value r = NULL;
	/* The filter may have been replaced between the two calls: a longer one
	 * fails with EINVAL, a shorter one gives its own count back. */
	if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, f, &got) < 0)
		bridge_throw_errno(env, "getsockopt(SO_GET_FILTER)", errno, 0, NULL);
	else
		r = bridge_make_buffer(env, f, (got < n ? got : n) * sizeof(*f));
	free(f);
	return r;
}

/* attachSocketFilter(fd, insns): SO_ATTACH_FILTER with a struct sock_fprog over
 * insns (8 bytes per instruction, at most BPF_MAXINSNS). The kernel checks the
 * program and refuses a bad one with EINVAL. */
static napi_value attach_socket_filter(napi_env env, napi_callback_info info)
{
	const char *fn = "attachSocketFilter";
	napi_value argv[2];
	int32_t fd;
	uint8_t *data;
	size_t len;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_bytes(env, argv[1], &data, &len, fn, "insns must be a Buffer"))
		return NULL;
	if (len == 0 || len % sizeof(struct sock_filter) || len / sizeof(struct sock_filter) > BPF_MAXINSNS)
		return bridge_throw_arg(env, fn, "insns must hold 1 to 4096 instructions of 8 bytes");
	struct sock_fprog p = {
		.len = (unsigned short)(len / sizeof(struct sock_filter)),
		.filter = (struct sock_filter *)data,
	};
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &p, sizeof(p)) < 0)
		return bridge_throw_errno(env, "setsockopt(SO_ATTACH_FILTER)", errno, 0, NULL);
	return NULL;
}

void bridge_init_sockfilter(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "getSocketFilter", get_socket_filter },
		{ "attachSocketFilter", attach_socket_filter },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
