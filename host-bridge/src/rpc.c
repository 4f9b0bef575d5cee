/* What criu's RPC needs of a SOCK_SEQPACKET socket: one message per packet, sized
 * with MSG_PEEK|MSG_TRUNC before it is read, a file descriptor passed along with
 * SCM_RIGHTS, accept(2) for the service, and a check of what a client may access,
 * made with the client's own credentials on a thread of its own (credentials set
 * with raw syscalls belong to the calling thread only). */
#include "bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

/* seqpacketRecv(fd, maxLen, timeoutMs): the next packet, null at EOF. A packet
 * longer than maxLen is read and dropped, then EMSGSIZE is thrown with its size. */
static napi_value seqpacket_recv(napi_env env, napi_callback_info info)
{
	const char *fn = "seqpacketRecv";
	napi_value argv[3];
	int32_t fd, timeout = -1;
	uint32_t max;
	if (!bridge_get_args_range(env, info, 2, 3, argv, NULL, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_uint32(env, argv[1], &max, fn, "maxLen must be a uint32"))
		return NULL;
	if (!bridge_is_nullish(env, argv[2]) &&
	    !bridge_arg_int32(env, argv[2], &timeout, fn, "timeoutMs must be an int32"))
		return NULL;
	if (!bridge_wait_readable(fd, timeout))
		return bridge_throw_errno(env, "poll", errno, 0, NULL);
	ssize_t len;
	char probe;
	do
		len = recv(fd, &probe, 1, MSG_PEEK | MSG_TRUNC);
	while (len < 0 && errno == EINTR);
	if (len < 0)
		return bridge_throw_errno(env, "recv", errno, 0, NULL);
	napi_value nul;
	napi_get_null(env, &nul);
	if (len == 0) {
		/* EOF, or an empty packet: consume it so that the next call sees what follows */
		recv(fd, &probe, 1, MSG_DONTWAIT);
		return nul;
	}
	if ((size_t)len > max) {
		recv(fd, &probe, 1, MSG_TRUNC);
		char msg[96];
		snprintf(msg, sizeof(msg), "recv: EMSGSIZE (a packet of %zd bytes; at most %u are read)", len, max);
		napi_value err, m, code;
		napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
		napi_create_error(env, NULL, m, &err);
		napi_create_string_utf8(env, "EMSGSIZE", NAPI_AUTO_LENGTH, &code);
		napi_set_named_property(env, err, "code", code);
		bridge_set_i32(env, err, "errno", EMSGSIZE);
		bridge_set_i32(env, err, "size", len > INT32_MAX ? INT32_MAX : (int32_t)len);
		napi_throw(env, err);
		return NULL;
	}
	void *data;
	napi_value buf;
	if (napi_create_buffer(env, (size_t)len, &data, &buf) != napi_ok)
		return bridge_throw_errno(env, "malloc", ENOMEM, 0, NULL);
	ssize_t n;
	do
		n = recv(fd, data, (size_t)len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return bridge_throw_errno(env, "recv", errno, 0, NULL);
	return buf;
}

/* seqpacketSend(fd, data, passFd): one packet, with passFd attached (SCM_RIGHTS)
 * when it is given and >= 0. */
static napi_value seqpacket_send(napi_env env, napi_callback_info info)
{
	const char *fn = "seqpacketSend";
	napi_value argv[3];
	int32_t fd, pass = -1;
	uint8_t *data;
	size_t len;
	if (!bridge_get_args_range(env, info, 2, 3, argv, NULL, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_bytes(env, argv[1], &data, &len, fn, "data must be a Buffer"))
		return NULL;
	if (!bridge_is_nullish(env, argv[2]) && !bridge_arg_int32(env, argv[2], &pass, fn, "passFd must be an int32"))
		return NULL;
	struct iovec iov = { .iov_base = data, .iov_len = len };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (pass >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass, sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return bridge_throw_errno(env, "sendmsg", errno, 0, NULL);
	return bridge_make_i64(env, n);
}

/* recvFd(fd, len, timeoutMs): one recvmsg of at most len bytes that may carry a file
 * descriptor (SCM_RIGHTS, taken CLOEXEC): { data, fd } with fd -1 when none came; data
 * is empty at EOF. A message with more than one fd is refused (they are closed). */
static napi_value recv_fd(napi_env env, napi_callback_info info)
{
	const char *fn = "recvFd";
	napi_value argv[3];
	int32_t fd, timeout = -1;
	uint32_t len;
	if (!bridge_get_args_range(env, info, 2, 3, argv, NULL, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_uint32(env, argv[1], &len, fn, "len must be a byte count"))
		return NULL;
	if (!bridge_is_nullish(env, argv[2]) &&
	    !bridge_arg_int32(env, argv[2], &timeout, fn, "timeoutMs must be an int32"))
		return NULL;
	if (len == 0 || len > 65536)
		return bridge_throw_arg(env, fn, "len must be 1..65536");
	if (!bridge_wait_readable(fd, timeout))
		return bridge_throw_errno(env, "poll", errno, 0, NULL);
	uint8_t data[65536];
	struct iovec iov = { .iov_base = data, .iov_len = len };
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)
	};
	ssize_t n;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return bridge_throw_errno(env, "recvmsg", errno, 0, NULL);
	int got = -1, extra = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int x;
			memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (got < 0) {
				got = x;
			} else {
				close(x);
				extra++;
			}
		}
	}
	if (extra || (mh.msg_flags & MSG_CTRUNC)) {
		if (got >= 0)
			close(got);
		return bridge_throw_errno(env, "recvmsg: more than one fd in a message", EBADMSG, 0, NULL);
	}
	napi_value o, b, f;
	napi_create_object(env, &o);
	b = bridge_make_buffer(env, data, (size_t)n);
	napi_create_int32(env, got, &f);
	napi_set_named_property(env, o, "data", b);
	napi_set_named_property(env, o, "fd", f);
	return o;
}

/* accept(fd, timeoutMs): the connected socket (SOCK_CLOEXEC). */
static napi_value accept_(napi_env env, napi_callback_info info)
{
	const char *fn = "accept";
	napi_value argv[2];
	int32_t fd, timeout = -1;
	if (!bridge_get_args_range(env, info, 1, 2, argv, NULL, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32"))
		return NULL;
	if (!bridge_is_nullish(env, argv[1]) &&
	    !bridge_arg_int32(env, argv[1], &timeout, fn, "timeoutMs must be an int32"))
		return NULL;
	if (!bridge_wait_readable(fd, timeout))
		return bridge_throw_errno(env, "poll", errno, 0, NULL);
	int c;
	do
		c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
	while (c < 0 && errno == EINTR);
	if (c < 0)
		return bridge_throw_errno(env, "accept", errno, 0, NULL);
	return bridge_make_i64(env, c);
}

/* parentDeathSignal(sig): the signal this process gets when its parent exits (0: none),
 * prctl(PR_SET_PDEATHSIG); returns the parent's pid as it is now, so that a parent gone
 * before the call is seen. */
static napi_value parent_death_signal(napi_env env, napi_callback_info info)
{
	const char *fn = "parentDeathSignal";
	napi_value argv[1];
	int32_t sig;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_int32(env, argv[0], &sig, fn, "sig must be an int32"))
		return NULL;
	if (sig < 0 || sig > 64)
		return bridge_throw_arg(env, fn, "sig must be 0 or a signal number");
	if (prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0) < 0)
		return bridge_throw_errno(env, "prctl(PR_SET_PDEATHSIG)", errno, 0, NULL);
	return bridge_make_i64(env, getppid());
}

struct as_peer {
	uint32_t uid, gid;
	uint32_t ngroups;
	gid_t *groups;
	uint64_t caps;
	const char *path;
	int err;
};

/* Takes the client's credentials (this thread only: raw syscalls), then opens the
 * path as it would. */
static void *as_peer_thread(void *arg)
{
	struct as_peer *a = arg;
	a->err = 0;
	if (syscall(SYS_setgroups, a->ngroups, a->groups) < 0 || syscall(SYS_setresgid, a->gid, a->gid, a->gid) < 0 ||
	    syscall(SYS_prctl, PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || syscall(SYS_setresuid, a->uid, a->uid, a->uid) < 0) {
		a->err = errno;
		return NULL;
	}
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capget, &h, d) < 0) {
		a->err = errno;
		return NULL;
	}
	/* what the client has, within what this thread kept */
	d[0].effective = d[0].permitted & (uint32_t)a->caps;
	d[1].effective = d[1].permitted & (uint32_t)(a->caps >> 32);
	d[0].permitted = d[0].effective;
	d[1].permitted = d[1].effective;
	d[0].inheritable = d[1].inheritable = 0;
	if (syscall(SYS_capset, &h, d) < 0) {
		a->err = errno;
		return NULL;
	}
	int fd = open(a->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		a->err = errno;
	else
		close(fd);
	return NULL;
}

/* openAs(path, {uid, gid, groups, caps}): whether a process with these credentials
 * may open path for reading; 0 or the errno it would get. /proc/PID/mem is opened
 * under ptrace's access rule (PTRACE_MODE_ATTACH_FSCREDS). */
static napi_value open_as(napi_env env, napi_callback_info info)
{
	const char *fn = "openAs";
	napi_value argv[2], v;
	struct as_peer a = { 0 };
	char *path = NULL;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_string(env, argv[0], &path, fn, "path must be a string"))
		return NULL;
	a.path = path;
	napi_value result = NULL;
	if (!bridge_opt_prop(env, argv[1], "uid", &v) || !bridge_arg_uint32(env, v, &a.uid, fn, "uid must be a uint32"))
		goto bad;
	if (!bridge_opt_prop(env, argv[1], "gid", &v) || !bridge_arg_uint32(env, v, &a.gid, fn, "gid must be a uint32"))
		goto bad;
	if (!bridge_opt_prop(env, argv[1], "caps", &v) || !bridge_arg_u64(env, v, &a.caps, fn, "caps must be a bigint"))
		goto bad;
	if (bridge_opt_prop(env, argv[1], "groups", &v)) {
		if (napi_get_array_length(env, v, &a.ngroups) != napi_ok || a.ngroups > 65536) {
			bridge_throw_arg(env, fn, "groups must be an array of at most 65536 gids");
			goto out;
		}
		a.groups = calloc(a.ngroups + 1, sizeof(gid_t));
		for (uint32_t i = 0; i < a.ngroups; i++) {
			napi_value g;
			uint32_t gid;
			napi_get_element(env, v, i, &g);
			if (!bridge_arg_uint32(env, g, &gid, fn, "groups must hold uint32 gids"))
				goto out;
			a.groups[i] = gid;
		}
	}
	pthread_t t;
	int e = pthread_create(&t, NULL, as_peer_thread, &a);
	if (e) {
		bridge_throw_errno(env, "pthread_create", e, 0, NULL);
		goto out;
	}
	pthread_join(t, NULL);
	result = bridge_make_i64(env, a.err);
	goto out;
bad : {
	bool pending = false;
	napi_is_exception_pending(env, &pending);
	if (!pending)
		bridge_throw_arg(env, fn, "credentials must be { uid, gid, groups, caps }");
}
out:
	free(a.groups);
	free(path);
	return result;
}

void bridge_init_rpc(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "seqpacketRecv", seqpacket_recv },
		{ "seqpacketSend", seqpacket_send },
		{ "recvFd", recv_fd },
		{ "accept", accept_ },
		{ "openAs", open_as },
		{ "parentDeathSignal", parent_death_signal },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
