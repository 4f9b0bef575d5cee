/* The socket calls every kind of socket needs on restore and dump: socket,
 * socketpair, listen, shutdown, send, and the options (getsockopt and
 * setsockopt on raw bytes; orchestrator/fds/sockopts.ts knows the layouts). */
#include "bridge.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Netlink dumps come in messages of at most 32 KiB (the kernel's largest
 * dump allocation). */
#define DIAG_BUF (64 * 1024)

napi_value bridge_make_buffer(napi_env env, const void *data, size_t len)
{
	napi_value b;
	void *out;
	napi_create_buffer_copy(env, len, data, &out, &b);
	return b;
}

napi_value bridge_sock_diag(napi_env env, const void *req, size_t req_len, size_t min_len, bridge_diag_entry entry,
			    void *ctx)
{
	int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return bridge_throw_errno(env, "socket(NETLINK_SOCK_DIAG)", errno, 0, NULL);
	struct nlmsghdr nlh = { .nlmsg_len = NLMSG_LENGTH(req_len),
				.nlmsg_type = SOCK_DIAG_BY_FAMILY,
				.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
				.nlmsg_seq = 1 };
	struct sockaddr_nl nladdr = { .nl_family = AF_NETLINK };
	struct iovec req_iov[2] = { { &nlh, NLMSG_HDRLEN }, { (void *)req, req_len } };
	struct msghdr req_mh = {
		.msg_name = &nladdr, .msg_namelen = sizeof(nladdr), .msg_iov = req_iov, .msg_iovlen = 2
	};
	napi_value out = NULL;
	char *buf = NULL;
	if (sendmsg(nl, &req_mh, 0) != (ssize_t)(NLMSG_HDRLEN + req_len)) {
		bridge_throw_errno(env, "sendmsg(NETLINK_SOCK_DIAG)", errno, 0, NULL);
		goto out;
	}
	buf = malloc(DIAG_BUF);
	if (!buf) {
		bridge_throw_errno(env, "malloc", ENOMEM, 0, NULL);
		goto out;
	}
	napi_value arr;
	uint32_t count = 0;
	napi_create_array(env, &arr);
	for (;;) {
		struct iovec iov = { buf, DIAG_BUF };
		struct msghdr mh = {
			.msg_name = &nladdr, .msg_namelen = sizeof(nladdr), .msg_iov = &iov, .msg_iovlen = 1
		};
		ssize_t n = recvmsg(nl, &mh, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			bridge_throw_errno(env, "recvmsg(NETLINK_SOCK_DIAG)", errno, 0, NULL);
			goto out;
		}
		if (mh.msg_flags & MSG_TRUNC) {
			bridge_throw_errno(env, "recvmsg(NETLINK_SOCK_DIAG)", EMSGSIZE, 0, NULL);
			goto out;
		}
		int len = (int)n;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_type == NLMSG_DONE) {
				out = arr;
				goto out;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				/* e.g. a protocol the kernel has no diag module for (UDP-Lite, raw) */
				bridge_throw_errno(env, "sock_diag", e->error ? -e->error : EPROTO, 0, NULL);
				goto out;
			}
			if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(min_len))
				continue;
			napi_value v = entry(env, h, ctx);
			if (v)
				napi_set_element(env, arr, count++, v);
		}
	}
out:
	free(buf);
	close(nl);
	return out;
}

static napi_value socket_(napi_env env, napi_callback_info info)
{
	const char *fn = "socket";
	napi_value argv[3];
	int32_t domain, type, proto = 0;
	if (!bridge_get_args_range(env, info, 2, 3, argv, NULL, fn) ||
	    !bridge_arg_int32(env, argv[0], &domain, fn, "domain must be an int32") ||
	    !bridge_arg_int32(env, argv[1], &type, fn, "type must be an int32"))
		return NULL;
	if (!bridge_is_nullish(env, argv[2]) &&
	    !bridge_arg_int32(env, argv[2], &proto, fn, "protocol must be an int32"))
		return NULL;
	int fd = socket(domain, type | SOCK_CLOEXEC, proto);
	if (fd < 0)
		return bridge_throw_errno(env, "socket", errno, 0, NULL);
	return bridge_make_i64(env, fd);
}

static napi_value socketpair_(napi_env env, napi_callback_info info)
{
	const char *fn = "socketpair";
	napi_value argv[2], arr;
	int32_t domain, type;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_int32(env, argv[0], &domain, fn, "domain must be an int32") ||
	    !bridge_arg_int32(env, argv[1], &type, fn, "type must be an int32"))
		return NULL;
	int sv[2];
	if (socketpair(domain, type | SOCK_CLOEXEC, 0, sv) < 0)
		return bridge_throw_errno(env, "socketpair", errno, 0, NULL);
	napi_create_array_with_length(env, 2, &arr);
	napi_set_element(env, arr, 0, bridge_make_i64(env, sv[0]));
	napi_set_element(env, arr, 1, bridge_make_i64(env, sv[1]));
	return arr;
}

static napi_value two_ints(napi_env env, napi_callback_info info, const char *fn, const char *what,
			   int (*call)(int, int), const char *syscall)
{
	napi_value argv[2];
	int32_t fd, v;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_int32(env, argv[1], &v, fn, what))
		return NULL;
	if (call(fd, v) < 0)
		return bridge_throw_errno(env, syscall, errno, 0, NULL);
	return NULL;
}

static napi_value listen_(napi_env env, napi_callback_info info)
{
	return two_ints(env, info, "listen", "backlog must be an int32", listen, "listen");
}

static napi_value shutdown_(napi_env env, napi_callback_info info)
{
	return two_ints(env, info, "shutdown", "how must be SHUT_RD (0), SHUT_WR (1) or SHUT_RDWR (2)", shutdown,
			"shutdown");
}

/* The kernel's SCM_MAX_FD: the most fds one message can pass. */
#define SCM_MAX_FDS 253

/* send(fd, data, flags, fds): one sendmsg of the whole buffer (one datagram),
 * with `fds` passed along (SCM_RIGHTS) when given; returns the bytes the kernel
 * took. MSG_NOSIGNAL is always added. */
static napi_value send_(napi_env env, napi_callback_info info)
{
	const char *fn = "send";
	napi_value argv[4];
	int32_t fd, flags = 0;
	uint8_t *data;
	size_t len;
	if (!bridge_get_args_range(env, info, 2, 4, argv, NULL, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_bytes(env, argv[1], &data, &len, fn, "data must be a Buffer"))
		return NULL;
	if (!bridge_is_nullish(env, argv[2]) && !bridge_arg_int32(env, argv[2], &flags, fn, "flags must be an int32"))
		return NULL;
	union {
		char buf[CMSG_SPACE(SCM_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { data, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (!bridge_is_nullish(env, argv[3])) {
		bool is_array = false;
		uint32_t nfds = 0;
		if (napi_is_array(env, argv[3], &is_array) != napi_ok || !is_array ||
		    napi_get_array_length(env, argv[3], &nfds) != napi_ok || nfds > SCM_MAX_FDS)
			return bridge_throw_arg(env, fn, "fds must be an array of at most 253 fds");
		if (nfds > 0) {
			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.buf;
			mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
			struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
			for (uint32_t i = 0; i < nfds; i++) {
				napi_value v;
				int32_t one;
				if (napi_get_element(env, argv[3], i, &v) != napi_ok ||
				    !bridge_arg_fd(env, v, &one, fn, "fds must hold non-negative int32s"))
					return NULL;
				memcpy(CMSG_DATA(c) + i * sizeof(int), &one, sizeof(int));
			}
		}
	}
	ssize_t n;
	do
		n = sendmsg(fd, &mh, flags | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return bridge_throw_errno(env, "sendmsg", errno, 0, NULL);
	return bridge_make_i64(env, n);
}

/* getsockopt(fd, level, name, size): the option's bytes (as many as the kernel
 * gives back, at most size). */
static napi_value getsockopt_(napi_env env, napi_callback_info info)
{
	const char *fn = "getsockopt";
	napi_value argv[4];
	int32_t fd, level, name;
	uint32_t size;
	if (!bridge_get_args(env, info, 4, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_int32(env, argv[1], &level, fn, "level must be an int32") ||
	    !bridge_arg_int32(env, argv[2], &name, fn, "name must be an int32") ||
	    !bridge_arg_uint32(env, argv[3], &size, fn, "size must be a uint32"))
		return NULL;
	if (size > 65536)
		return bridge_throw_arg(env, fn, "size must be at most 65536");
	char *buf = calloc(1, size ? size : 1);
	if (!buf)
		return bridge_throw_errno(env, "malloc", ENOMEM, 0, NULL);
	socklen_t l = size;
	napi_value r = NULL;
	if (getsockopt(fd, level, name, buf, &l) < 0)
		bridge_throw_errno(env, "getsockopt", errno, 0, NULL);
	else
		r = bridge_make_buffer(env, buf, l < size ? l : size);
	free(buf);
	return r;
}

static napi_value setsockopt_(napi_env env, napi_callback_info info)
{
	const char *fn = "setsockopt";
	napi_value argv[4];
	int32_t fd, level, name;
	uint8_t *data;
	size_t len;
	if (!bridge_get_args(env, info, 4, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_int32(env, argv[1], &level, fn, "level must be an int32") ||
	    !bridge_arg_int32(env, argv[2], &name, fn, "name must be an int32") ||
	    !bridge_arg_bytes(env, argv[3], &data, &len, fn, "value must be a Buffer"))
		return NULL;
	if (setsockopt(fd, level, name, data, (socklen_t)len) < 0)
		return bridge_throw_errno(env, "setsockopt", errno, 0, NULL);
	return NULL;
}

/* The call that failed, named with its option: "getsockopt(level 6, name 3)". */
static napi_value throw_opt(napi_env env, const char *call, int32_t level, int32_t name, int err)
{
	char what[64];
	snprintf(what, sizeof(what), "%s(level %d, name %d)", call, (int)level, (int)name);
	return bridge_throw_errno(env, what, err, 0, NULL);
}

/* Options read in order into `out`, each into the next `size` bytes (zeroed first: a
 * shorter answer, SO_BINDTODEVICE's name, leaves zeros after it); `spec` holds (level,
 * name) pairs of int options, or with `sized` (level, name, size) triples. */
static napi_value read_opts(napi_env env, const char *fn, int32_t fd, const uint8_t *spec, size_t slen, bool sized,
			    uint8_t *out, size_t olen)
{
	size_t per = sized ? 12 : 8, n = slen / per, off = 0;
	if (slen % per)
		return bridge_throw_arg(env, fn,
					sized ? "spec must hold (level, name, size) triples"
					      : "spec must hold (level, name) pairs");
	for (size_t i = 0; i < n; i++) {
		int32_t level, name, size = 4;
		memcpy(&level, spec + per * i, 4);
		memcpy(&name, spec + per * i + 4, 4);
		if (sized)
			memcpy(&size, spec + per * i + 8, 4);
		if (size < 0 || size > 4096 || off + (size_t)size > olen)
			return bridge_throw_arg(env, fn, "out must hold every option's size, each at most 4096");
		memset(out + off, 0, (size_t)size);
		socklen_t l = (socklen_t)size;
		if (getsockopt(fd, level, name, out + off, &l) < 0)
			return throw_opt(env, "getsockopt", level, name, errno);
		off += (size_t)size;
	}
	return NULL;
}

/* getsockoptInts(fd, spec, out): int options by the pair, spec holding level, name,
 * level, name, ...; out[i] gets the i-th option's value. One call for the dozens of
 * options of a socket: a server's thousand connections are tens of thousands of them.
 * getsockoptsInto(fd, spec, out): options of any size, spec holding (level, name, size)
 * triples, each option's bytes in the next `size` bytes of out. */
static napi_value getsockopts_common(napi_env env, napi_callback_info info, const char *fn, bool sized)
{
	napi_value argv[3];
	int32_t fd;
	uint8_t *spec, *out;
	size_t slen, olen;
	if (!bridge_get_args(env, info, 3, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_bytes(env, argv[1], &spec, &slen, fn, "spec must be an Int32Array") ||
	    !bridge_arg_bytes(env, argv[2], &out, &olen, fn, "out must be an Int32Array or a Buffer"))
		return NULL;
	return read_opts(env, fn, fd, spec, slen, sized, out, olen);
}

static napi_value getsockopt_ints(napi_env env, napi_callback_info info)
{
	return getsockopts_common(env, info, "getsockoptInts", false);
}

static napi_value getsockopts_into(napi_env env, napi_callback_info info)
{
	return getsockopts_common(env, info, "getsockoptsInto", true);
}

/* setsockoptInts(fd, spec): int options set in order, spec holding level, name, value
 * triples. */
static napi_value setsockopt_ints(napi_env env, napi_callback_info info)
{
	const char *fn = "setsockoptInts";
	napi_value argv[2];
	int32_t fd;
	uint8_t *spec;
	size_t slen;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_bytes(env, argv[1], &spec, &slen, fn, "spec must be an Int32Array"))
		return NULL;
	if (slen % 12)
		return bridge_throw_arg(env, fn, "spec must hold (level, name, value) triples");
	for (size_t i = 0; i < slen / 12; i++) {
		int32_t t[3];
		memcpy(t, spec + 12 * i, 12);
		if (setsockopt(fd, t[0], t[1], &t[2], sizeof(t[2])) < 0)
			return throw_opt(env, "setsockopt", t[0], t[1], errno);
	}
	return NULL;
}

/* What setsockoptIntsMany does, each thread a part of the fds. */
struct ints_many {
	const int32_t *fds, *counts, *spec;
	size_t *first; /* each fd's first triple in spec */
	int *err;
	int32_t (*failed)[2]; /* the level and name of the option that failed */
};

static void ints_item(void *arg, size_t i)
{
	struct ints_many *m = arg;
	for (int32_t k = 0; k < m->counts[i]; k++) {
		const int32_t *t = m->spec + 3 * (m->first[i] + (size_t)k);
		if (setsockopt(m->fds[i], t[0], t[1], &t[2], sizeof(t[2])) < 0) {
			m->err[i] = errno;
			m->failed[i][0] = t[0];
			m->failed[i][1] = t[1];
			return;
		}
	}
}

/* setsockoptIntsMany(fds, counts, spec): fd i's int options set, counts[i] (level, name,
 * value) triples of spec after those of the fds before it, in order, on two threads; an
 * fd's first failure stops its own. Returns each failed fd's error at its index (empty
 * when none failed). A server's thousand connections leave repair mode in one crossing. */
static napi_value setsockopt_ints_many(napi_env env, napi_callback_info info)
{
	const char *fn = "setsockoptIntsMany";
	napi_value argv[3];
	uint8_t *fds_b, *counts_b, *spec_b;
	size_t fds_len, counts_len, spec_len;
	if (!bridge_get_args(env, info, 3, argv, fn) ||
	    !bridge_arg_bytes(env, argv[0], &fds_b, &fds_len, fn, "fds must be an Int32Array") ||
	    !bridge_arg_bytes(env, argv[1], &counts_b, &counts_len, fn, "counts must be an Int32Array") ||
	    !bridge_arg_bytes(env, argv[2], &spec_b, &spec_len, fn, "spec must be an Int32Array"))
		return NULL;
	size_t n = fds_len / 4, total = 0;
	if (fds_len % 4 || counts_len != fds_len || spec_len % 12 || (uintptr_t)fds_b % 4 || (uintptr_t)counts_b % 4 ||
	    (uintptr_t)spec_b % 4)
		return bridge_throw_arg(env, fn,
					"counts must hold one count per fd, spec (level, name, value) triples");
	struct ints_many m = {
		(const int32_t *)fds_b, (const int32_t *)counts_b, (const int32_t *)spec_b, NULL, NULL, NULL
	};
	m.first = calloc(n ? n : 1, sizeof(*m.first));
	m.err = calloc(n ? n : 1, sizeof(*m.err));
	m.failed = calloc(n ? n : 1, sizeof(*m.failed));
	napi_value errors = NULL;
	if (!m.first || !m.err || !m.failed) {
		bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (m.counts[i] < 0 || (size_t)m.counts[i] > spec_len / 12 - total) {
			bridge_throw_arg(env, fn, "the counts add up to more triples than spec holds");
			goto out;
		}
		m.first[i] = total;
		total += (size_t)m.counts[i];
	}
	bridge_on_two_threads(n, ints_item, &m);
	napi_create_array(env, &errors);
	for (size_t i = 0; i < n; i++) {
		if (!m.err[i])
			continue;
		char what[64];
		snprintf(what, sizeof(what), "setsockopt(level %d, name %d)", (int)m.failed[i][0], (int)m.failed[i][1]);
		napi_set_element(env, errors, (uint32_t)i, bridge_errno_error(env, what, m.err[i], 0, NULL));
	}
out:
	free(m.first);
	free(m.err);
	free(m.failed);
	return errors;
}

/* recvFull(fd, buf, timeoutMs): fills buf from a stream socket; returns the bytes
 * read, fewer than buf holds only when the peer closed. With a timeout, each wait
 * for more data may last that long (ETIMEDOUT). */
static napi_value recv_full(napi_env env, napi_callback_info info)
{
	const char *fn = "recvFull";
	napi_value argv[3];
	int32_t fd, timeout = -1;
	uint8_t *buf;
	size_t len;
	if (!bridge_get_args_range(env, info, 2, 3, argv, NULL, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_bytes(env, argv[1], &buf, &len, fn, "buf must be a Uint8Array"))
		return NULL;
	if (!bridge_is_nullish(env, argv[2]) &&
	    !bridge_arg_int32(env, argv[2], &timeout, fn, "timeoutMs must be an int32"))
		return NULL;
	size_t got = 0;
	while (got < len) {
		if (!bridge_wait_readable(fd, timeout))
			return bridge_throw_errno(env, "poll", errno, 0, NULL);
		ssize_t n = recv(fd, buf + got, len - got, timeout < 0 ? MSG_WAITALL : 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return bridge_throw_errno(env, "recv", errno, 0, NULL);
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return bridge_make_i64(env, (int64_t)got);
}

/* All of data[0, len) on a stream socket; 0 or an errno. */
static int send_all(int fd, const uint8_t *data, size_t len)
{
	size_t sent = 0;
	while (sent < len) {
		ssize_t n = send(fd, data + sent, len - sent, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno;
		sent += (size_t)n;
	}
	return 0;
}

/* The (fd, data) arguments of sendFull and sendFullAsync. */
static bool send_args(napi_env env, napi_callback_info info, const char *fn, napi_value *argv, int32_t *fd,
		      uint8_t **data, size_t *len)
{
	return bridge_get_args(env, info, 2, argv, fn) &&
	       bridge_arg_fd(env, argv[0], fd, fn, "fd must be a non-negative int32") &&
	       bridge_arg_bytes(env, argv[1], data, len, fn, "data must be a Uint8Array");
}

/* sendFull(fd, data): sends all of data on a stream socket (MSG_NOSIGNAL). */
static napi_value send_full(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	int32_t fd;
	uint8_t *data;
	size_t len;
	if (!send_args(env, info, "sendFull", argv, &fd, &data, &len))
		return NULL;
	int err = send_all(fd, data, len);
	return err ? bridge_throw_errno(env, "send", err, 0, NULL) : NULL;
}

/* A send on libuv's thread pool: the data stays referenced until it is sent. */
struct send_job {
	napi_async_work work;
	napi_deferred deferred;
	napi_ref data_ref;
	int fd;
	const uint8_t *data;
	size_t len;
	int err;
};

static void send_job_run(napi_env env, void *arg)
{
	(void)env;
	struct send_job *j = arg;
	j->err = send_all(j->fd, j->data, j->len);
}

static void send_job_done(napi_env env, napi_status status, void *arg)
{
	struct send_job *j = arg;
	napi_value v;
	int err = status == napi_cancelled ? ECANCELED : j->err;
	if (err)
		napi_reject_deferred(env, j->deferred, bridge_errno_error(env, "send", err, 0, NULL));
	else if (napi_get_undefined(env, &v) == napi_ok)
		napi_resolve_deferred(env, j->deferred, v);
	napi_delete_reference(env, j->data_ref);
	napi_delete_async_work(env, j->work);
	free(j);
}

/* sendFullAsync(fd, data): sendFull on libuv's thread pool (the page server's client
 * reads the next pages out of the task meanwhile); data must not change until the
 * promise settles. */
static napi_value send_full_async(napi_env env, napi_callback_info info)
{
	const char *fn = "sendFullAsync";
	napi_value argv[2];
	int32_t fd;
	uint8_t *data;
	size_t len;
	if (!send_args(env, info, fn, argv, &fd, &data, &len))
		return NULL;
	struct send_job *j = calloc(1, sizeof(*j));
	if (!j)
		return bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
	j->fd = fd;
	j->data = data;
	j->len = len;
	if (napi_create_reference(env, argv[1], 1, &j->data_ref) != napi_ok) {
		free(j);
		return bridge_throw_errno(env, "napi_create_reference", ENOMEM, 0, NULL);
	}
	napi_value promise = bridge_queue_job(env, fn, send_job_run, send_job_done, j, &j->work, &j->deferred);
	if (!promise) {
		napi_delete_reference(env, j->data_ref);
		free(j);
	}
	return promise;
}

void bridge_init_sockets(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "socket", socket_ },
		{ "socketpair", socketpair_ },
		{ "listen", listen_ },
		{ "shutdown", shutdown_ },
		{ "send", send_ },
		{ "recvFull", recv_full },
		{ "sendFull", send_full },
		{ "sendFullAsync", send_full_async },
		{ "getsockopt", getsockopt_ },
		{ "setsockopt", setsockopt_ },
		{ "getsockoptInts", getsockopt_ints },
		{ "getsockoptsInto", getsockopts_into },
		{ "setsockoptInts", setsockopt_ints },
		{ "setsockoptIntsMany", setsockopt_ints_many },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
