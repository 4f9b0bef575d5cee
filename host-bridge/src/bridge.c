/* Module entry of the native host bridge, and the helpers every area uses. */
#include "bridge.h"

#include <poll.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void set_prop(napi_env env, napi_value obj, const char *key, napi_value v)
{
	napi_set_named_property(env, obj, key, v);
}

napi_value bridge_errno_error(napi_env env, const char *syscall, int err, int pid, const char *path)
{
	const char *code = strerrorname_np(err);
	char msg[512];
	if (!code)
		code = "EUNKNOWN";
	if (path)
		snprintf(msg, sizeof(msg), "%s %s: %s (%s)", syscall, path, code, strerror(err));
	else if (pid > 0)
		snprintf(msg, sizeof(msg), "%s pid %d: %s (%s)", syscall, pid, code, strerror(err));
	else
		snprintf(msg, sizeof(msg), "%s: %s (%s)", syscall, code, strerror(err));

	napi_value jmsg, jcode, error, v;
	napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &jmsg);
	napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &jcode);
	napi_create_error(env, jcode, jmsg, &error);
	napi_create_int32(env, err, &v);
	set_prop(env, error, "errno", v);
	napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v);
	set_prop(env, error, "syscall", v);
	if (pid > 0) {
		napi_create_int32(env, pid, &v);
		set_prop(env, error, "pid", v);
	}
	if (path) {
		napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &v);
		set_prop(env, error, "path", v);
	}
	return error;
}

napi_value bridge_throw_errno(napi_env env, const char *syscall, int err, int pid, const char *path)
{
	napi_throw(env, bridge_errno_error(env, syscall, err, pid, path));
	return NULL;
}

napi_value bridge_throw_arg(napi_env env, const char *fn, const char *what)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "%s: %s", fn, what);
	napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
	return NULL;
}

bool bridge_get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv, const char *fn)
{
	size_t argc = want;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
		char what[64];
		snprintf(what, sizeof(what), "expects %zu arguments, got %zu", want, argc);
		bridge_throw_arg(env, fn, what);
		return false;
	}
	return true;
}

static bool is_number(napi_env env, napi_value v)
{
	napi_valuetype t;
	return napi_typeof(env, v, &t) == napi_ok && t == napi_number;
}

bool bridge_arg_int32(napi_env env, napi_value v, int32_t *out, const char *fn, const char *what)
{
	double d;
	if (!is_number(env, v) || napi_get_value_double(env, v, &d) != napi_ok || d != (double)(int32_t)d) {
		bridge_throw_arg(env, fn, what);
		return false;
	}
	*out = (int32_t)d;
	return true;
}

bool bridge_arg_uint32(napi_env env, napi_value v, uint32_t *out, const char *fn, const char *what)
{
	double d;
	if (!is_number(env, v) || napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d > 4294967295.0 ||
	    d != (double)(uint32_t)d) {
		bridge_throw_arg(env, fn, what);
		return false;
	}
	*out = (uint32_t)d;
	return true;
}

bool bridge_arg_u64(napi_env env, napi_value v, uint64_t *out, const char *fn, const char *what)
{
	napi_valuetype t;
	if (napi_typeof(env, v, &t) != napi_ok) {
		bridge_throw_arg(env, fn, what);
		return false;
	}
	if (t == napi_bigint) {
		bool lossless = false;
		if (napi_get_value_bigint_uint64(env, v, out, &lossless) != napi_ok || !lossless) {
			bridge_throw_arg(env, fn, what);
			return false;
		}
		return true;
	}
	double d;
	if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d > 9007199254740991.0 ||
	    d != (double)(uint64_t)d) {
		bridge_throw_arg(env, fn, what);
		return false;
	}
	*out = (uint64_t)d;
	return true;
}

bool bridge_get_args_range(napi_env env, napi_callback_info info, size_t min, size_t max, napi_value *argv,
			   size_t *argc_out, const char *fn)
{
	size_t argc = max;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < min) {
		char what[80];
		snprintf(what, sizeof(what), "expects %zu to %zu arguments, got %zu", min, max, argc);
		bridge_throw_arg(env, fn, what);
		return false;
	}
	if (argc_out)
		*argc_out = argc < max ? argc : max;
	return true;
}

bool bridge_is_nullish(napi_env env, napi_value v)
{
	napi_valuetype t;
	if (!v)
		return true;
	return napi_typeof(env, v, &t) == napi_ok && (t == napi_undefined || t == napi_null);
}

void bridge_set_u32(napi_env env, napi_value obj, const char *key, uint32_t v)
{
	napi_value x;
	napi_create_uint32(env, v, &x);
	napi_set_named_property(env, obj, key, x);
}

void bridge_set_i32(napi_env env, napi_value obj, const char *key, int32_t v)
{
	napi_value x;
	napi_create_int32(env, v, &x);
	napi_set_named_property(env, obj, key, x);
}

bool bridge_opt_prop(napi_env env, napi_value obj, const char *key, napi_value *out)
{
	bool has = false;
	if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has)
		return false;
	if (napi_get_named_property(env, obj, key, out) != napi_ok)
		return false;
	return !bridge_is_nullish(env, *out);
}

bool bridge_arg_pid(napi_env env, napi_value v, int32_t *out, const char *fn)
{
	if (!bridge_arg_int32(env, v, out, fn, "pid must be a positive int32"))
		return false;
	if (*out <= 0) {
		bridge_throw_arg(env, fn, "pid must be a positive int32");
		return false;
	}
	return true;
}

bool bridge_arg_fd(napi_env env, napi_value v, int32_t *out, const char *fn, const char *what)
{
	if (!bridge_arg_int32(env, v, out, fn, what))
		return false;
	if (*out < 0) {
		bridge_throw_arg(env, fn, what);
		return false;
	}
	return true;
}

bool bridge_arg_word(napi_env env, napi_value v, uint64_t *out, const char *fn, const char *what)
{
	napi_valuetype t;
	if (napi_typeof(env, v, &t) != napi_ok)
		goto bad;
	if (t == napi_bigint) {
		/* Read the sign and up to two 64-bit words to tell [-2^63, 2^64) apart. */
		int sign = 0;
		size_t count = 2;
		uint64_t words[2] = { 0, 0 };
		if (napi_get_value_bigint_words(env, v, &sign, &count, words) != napi_ok || count > 1)
			goto bad;
		if (!sign) {
			*out = words[0];
			return true;
		}
		if (words[0] > (uint64_t)INT64_MAX + 1)
			goto bad;
		*out = (uint64_t)0 - words[0];
		return true;
	}
	double d;
	if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || d < -9007199254740991.0 ||
	    d > 9007199254740991.0 || d != (double)(int64_t)d)
		goto bad;
	*out = (uint64_t)(int64_t)d;
	return true;
bad:
	bridge_throw_arg(env, fn, what);
	return false;
}

bool bridge_arg_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len, const char *fn, const char *what)
{
	bool is = false;
	void *p = NULL;
	if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
		napi_typedarray_type type;
		size_t n, off;
		napi_value ab;
		if (napi_get_typedarray_info(env, v, &type, &n, &p, &ab, &off) != napi_ok)
			goto bad;
		size_t elem = 1;
		switch (type) {
		case napi_int16_array:
		case napi_uint16_array:
			elem = 2;
			break;
		case napi_int32_array:
		case napi_uint32_array:
		case napi_float32_array:
			elem = 4;
			break;
		case napi_float64_array:
		case napi_bigint64_array:
		case napi_biguint64_array:
			elem = 8;
			break;
		default:
			elem = 1;
		}
		*data = p;
		*len = n * elem;
		return true;
	}
	if (napi_is_dataview(env, v, &is) == napi_ok && is) {
		size_t n, off;
		napi_value ab;
		if (napi_get_dataview_info(env, v, &n, &p, &ab, &off) != napi_ok)
			goto bad;
		*data = p;
		*len = n;
		return true;
	}
	if (napi_is_arraybuffer(env, v, &is) == napi_ok && is) {
		size_t n;
		if (napi_get_arraybuffer_info(env, v, &p, &n) != napi_ok)
			goto bad;
		*data = p;
		*len = n;
		return true;
	}
bad:
	bridge_throw_arg(env, fn, what);
	return false;
}

/* A BigUint64Array (or any bytes) of groups of `per` 64-bit values: false after throwing. */
bool bridge_arg_u64s(napi_env env, napi_value v, uint64_t **out, size_t *n, size_t per, const char *fn,
		     const char *what)
{
	uint8_t *data;
	size_t len;
	if (!bridge_arg_bytes(env, v, &data, &len, fn, what))
		return false;
	if (len % (per * 8)) {
		bridge_throw_arg(env, fn, what);
		return false;
	}
	*out = (uint64_t *)(void *)data;
	*n = len / (per * 8);
	return true;
}

bool bridge_arg_string(napi_env env, napi_value v, char **out, const char *fn, const char *what)
{
	napi_valuetype t;
	size_t n = 0;
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_string ||
	    napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) {
		bridge_throw_arg(env, fn, what);
		return false;
	}
	char *s = malloc(n + 1);
	if (!s) {
		bridge_throw_errno(env, "malloc", ENOMEM, 0, NULL);
		return false;
	}
	napi_get_value_string_utf8(env, v, s, n + 1, &n);
	if (strlen(s) != n) {
		/* An embedded NUL would silently cut a path short. */
		free(s);
		bridge_throw_arg(env, fn, what);
		return false;
	}
	*out = s;
	return true;
}

bool bridge_arg_window(napi_env env, napi_value off_v, napi_value len_v, size_t buf_len, size_t *off, size_t *n,
		       const char *fn)
{
	uint64_t o = 0, l;
	if (!bridge_is_nullish(env, off_v) &&
	    !bridge_arg_u64(env, off_v, &o, fn, "offset must be a non-negative integer"))
		return false;
	if (o > buf_len) {
		bridge_throw_arg(env, fn, "offset is past the end of the buffer");
		return false;
	}
	l = buf_len - o;
	if (!bridge_is_nullish(env, len_v) &&
	    !bridge_arg_u64(env, len_v, &l, fn, "length must be a non-negative integer"))
		return false;
	if (l > buf_len - o) {
		bridge_throw_arg(env, fn, "offset + length is past the end of the buffer");
		return false;
	}
	*off = (size_t)o;
	*n = (size_t)l;
	return true;
}

napi_value bridge_make_u64(napi_env env, uint64_t v)
{
	napi_value r;
	if (v <= 9007199254740991ULL)
		napi_create_double(env, (double)v, &r);
	else
		napi_create_bigint_uint64(env, v, &r);
	return r;
}

napi_value bridge_make_i64(napi_env env, int64_t v)
{
	napi_value r;
	napi_create_double(env, (double)v, &r);
	return r;
}

void bridge_register(napi_env env, napi_value exports, const bridge_fn *fns, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		napi_value f;
		napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
		napi_set_named_property(env, exports, fns[i].name, f);
	}
}

static napi_value init(napi_env env, napi_value exports)
{
	bridge_init_files(env, exports);
	bridge_init_anonfd(env, exports);
	bridge_init_mount(env, exports);
	bridge_init_cpu(env, exports);
	bridge_init_ptrace(env, exports);
	bridge_init_regset(env, exports);
	bridge_init_remote(env, exports);
	bridge_init_memory(env, exports);
	bridge_init_uffd_wp(env, exports);
	bridge_init_uffd_track(env, exports);
	bridge_init_syscall_watch(env, exports);
	bridge_init_packet(env, exports);
	bridge_init_pagemap(env, exports);
	bridge_init_pidfd(env, exports);
	bridge_init_spawn(env, exports);
	bridge_init_dumpsys(env, exports);
	bridge_init_tty(env, exports);
	bridge_init_pty(env, exports);
	bridge_init_sockets(env, exports);
	bridge_init_sockfilter(env, exports);
	bridge_init_unix(env, exports);
	bridge_init_inet(env, exports);
	bridge_init_tcp_repair(env, exports);
	bridge_init_rpc(env, exports);
	bridge_init_restore(env, exports);
	bridge_init_lazy(env, exports);
	bridge_init_prefault(env, exports);
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

/* Waits until fd is readable; false with errno ETIMEDOUT when timeout_ms passes (a
 * negative timeout: true at once, the read that follows blocks). */
bool bridge_wait_readable(int fd, int32_t timeout_ms)
{
	if (timeout_ms < 0)
		return true;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int r;
	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		errno = ETIMEDOUT;
	return r > 0;
}

napi_value bridge_queue_job(napi_env env, const char *name, napi_async_execute_callback execute,
			    napi_async_complete_callback complete, void *data, napi_async_work *work,
			    napi_deferred *deferred)
{
	napi_value n, promise;
	*work = NULL;
	napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &n);
	if (napi_create_promise(env, deferred, &promise) != napi_ok ||
	    napi_create_async_work(env, NULL, n, execute, complete, data, work) != napi_ok ||
	    napi_queue_async_work(env, *work) != napi_ok) {
		/* a promise made before the failure stays pending: nobody holds it */
		if (*work)
			napi_delete_async_work(env, *work);
		return bridge_throw_errno(env, "napi_queue_async_work", ENOMEM, 0, NULL);
	}
	return promise;
}

/* The halves of bridge_on_two_threads' items. */
struct halves {
	void (*one)(void *ctx, size_t i);
	void *ctx;
	size_t from, to;
};

static void *run_half(void *arg)
{
	struct halves *h = arg;
	for (size_t i = h->from; i < h->to; i++)
		h->one(h->ctx, i);
	return NULL;
}

/* From this many items, the second half runs on a thread of its own. */
#define SPLIT_FROM 16

/* one(ctx, i) for each i below n: the second half on a thread of its own from SPLIT_FROM
 * items on (on this one alone where a thread cannot be made). */
void bridge_on_two_threads(size_t n, void (*one)(void *ctx, size_t i), void *ctx)
{
	struct halves second = { one, ctx, n / 2, n };
	pthread_t t;
	bool split = n >= SPLIT_FROM && pthread_create(&t, NULL, run_half, &second) == 0;
	struct halves first = { one, ctx, 0, split ? n / 2 : n };
	run_half(&first);
	if (split)
		pthread_join(t, NULL);
}
