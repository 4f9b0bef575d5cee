/* TCP and UDP sockets: the kernel's table of them through sock_diag (state,
 * addresses, queue lengths, shutdown: what /proc does not tell), their own
 * addresses (getsockname, getpeername), bind and connect to an address given
 * as the raw sockaddr bytes (orchestrator/fds/inet-addr.ts lays them out), and
 * poll's verdict on a socket, which is the only way to learn the shutdown state
 * of a TCP socket that sock_diag does not list. */
#include "bridge.h"

#include <dlfcn.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* inetDiag's answer: one record of INET_DIAG_RECORD bytes per socket, little-endian:
 * ino u32 @0, state u8 @4, shutdown i8 @5 (-1 when the kernel did not say), sport u16
 * @8 and dport u16 @10 (host order), rqlen u32 @12, wqlen u32 @16, the source address
 * @20 and the destination @36 as the kernel's 16 bytes (an IPv4 one in the first four).
 * One Buffer, not an object per socket: a server's table has thousands, and making an
 * object with its properties and two Buffers for each cost more than the dump itself. */
#define INET_DIAG_RECORD 52

struct diag_records {
	uint8_t *data;
	size_t len, cap;
	bool nomem;
};

static napi_value diag_entry(napi_env env, const struct nlmsghdr *h, void *ctx)
{
	(void)env;
	struct diag_records *out = ctx;
	if (out->nomem)
		return NULL;
	if (out->len + INET_DIAG_RECORD > out->cap) {
		size_t cap = out->cap ? 2 * out->cap : 256 * INET_DIAG_RECORD;
		uint8_t *grown = realloc(out->data, cap);
		if (!grown) {
			out->nomem = true;
			return NULL;
		}
		out->data = grown;
		out->cap = cap;
	}
	const struct inet_diag_msg *m = NLMSG_DATA(h);
	int8_t shutdown_ = -1;
	int len = (int)h->nlmsg_len - NLMSG_LENGTH(sizeof(*m));
	for (struct rtattr *a = (struct rtattr *)((char *)m + NLMSG_ALIGN(sizeof(*m))); RTA_OK(a, len);
	     a = RTA_NEXT(a, len)) {
		if (a->rta_type == INET_DIAG_SHUTDOWN && RTA_PAYLOAD(a) >= 1)
			shutdown_ = (int8_t) * (const uint8_t *)RTA_DATA(a);
	}
	uint8_t *r = out->data + out->len;
	memset(r, 0, INET_DIAG_RECORD);
	uint32_t ino = m->idiag_inode, rq = m->idiag_rqueue, wq = m->idiag_wqueue;
	uint16_t sport = ntohs(m->id.idiag_sport), dport = ntohs(m->id.idiag_dport);
	memcpy(r, &ino, 4);
	r[4] = m->idiag_state;
	r[5] = (uint8_t)shutdown_;
	memcpy(r + 8, &sport, 2);
	memcpy(r + 10, &dport, 2);
	memcpy(r + 12, &rq, 4);
	memcpy(r + 16, &wq, 4);
	memcpy(r + 20, m->id.idiag_src, 16);
	memcpy(r + 36, m->id.idiag_dst, 16);
	out->len += INET_DIAG_RECORD;
	return NULL;
}

/* inetDiag(family, protocol, states): every socket of that family and
 * protocol in tscriu's network namespace whose state is in the bit mask, as
 * records (above). */
static napi_value inet_diag(napi_env env, napi_callback_info info)
{
	const char *fn = "inetDiag";
	napi_value argv[3];
	int32_t family, protocol;
	uint32_t states;
	if (!bridge_get_args(env, info, 3, argv, fn) ||
	    !bridge_arg_int32(env, argv[0], &family, fn, "family must be AF_INET or AF_INET6") ||
	    !bridge_arg_int32(env, argv[1], &protocol, fn, "protocol must be an int32") ||
	    !bridge_arg_uint32(env, argv[2], &states, fn, "states must be a uint32 bit mask"))
		return NULL;
	if (family != AF_INET && family != AF_INET6)
		return bridge_throw_arg(env, fn, "family must be AF_INET or AF_INET6");
	struct inet_diag_req_v2 req = { .sdiag_family = (uint8_t)family,
					.sdiag_protocol = (uint8_t)protocol,
					.idiag_states = states };
	struct diag_records out = { NULL, 0, 0, false };
	napi_value r = bridge_sock_diag(env, &req, sizeof(req), sizeof(struct inet_diag_msg), diag_entry, &out);
	if (r && out.nomem)
		r = bridge_throw_errno(env, "inetDiag", ENOMEM, 0, NULL);
	else if (r)
		r = bridge_make_buffer(env, out.data, out.len);
	free(out.data);
	return r;
}

static napi_value name_common(napi_env env, napi_callback_info info, bool peer)
{
	const char *fn = peer ? "peerName" : "sockName";
	napi_value argv[1];
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32"))
		return NULL;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	memset(&ss, 0, sizeof(ss));
	if ((peer ? getpeername(fd, (struct sockaddr *)&ss, &len) : getsockname(fd, (struct sockaddr *)&ss, &len)) <
	    0) {
		if (peer && errno == ENOTCONN) {
			napi_value n;
			napi_get_null(env, &n);
			return n;
		}
		return bridge_throw_errno(env, peer ? "getpeername" : "getsockname", errno, 0, NULL);
	}
	return bridge_make_buffer(env, &ss, len < sizeof(ss) ? len : sizeof(ss));
}

/* sockName(fd): getsockname's sockaddr bytes. */
static napi_value sock_name(napi_env env, napi_callback_info info)
{
	return name_common(env, info, false);
}

/* peerName(fd): getpeername's sockaddr bytes, null when not connected. */
static napi_value peer_name(napi_env env, napi_callback_info info)
{
	return name_common(env, info, true);
}

static napi_value addr_common(napi_env env, napi_callback_info info, bool conn)
{
	const char *fn = conn ? "connectAddr" : "bindAddr";
	napi_value argv[2];
	int32_t fd;
	uint8_t *addr;
	size_t len;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_bytes(env, argv[1], &addr, &len, fn, "address must be the sockaddr's bytes"))
		return NULL;
	if (len < sizeof(sa_family_t) || len > sizeof(struct sockaddr_storage))
		return bridge_throw_arg(env, fn, "address must be a sockaddr of 2 to 128 bytes");
	struct sockaddr_storage ss;
	memcpy(&ss, addr, len);
	int r;
	do
		r = conn ? connect(fd, (struct sockaddr *)&ss, (socklen_t)len)
			 : bind(fd, (struct sockaddr *)&ss, (socklen_t)len);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return bridge_throw_errno(env, conn ? "connect" : "bind", errno, 0, NULL);
	return NULL;
}

/* bindAddr(fd, sockaddr) */
static napi_value bind_addr(napi_env env, napi_callback_info info)
{
	return addr_common(env, info, false);
}

/* connectAddr(fd, sockaddr) */
static napi_value connect_addr(napi_env env, napi_callback_info info)
{
	return addr_common(env, info, true);
}

/* pollNow(fd, events): the revents poll gives without waiting. */
static napi_value poll_now(napi_env env, napi_callback_info info)
{
	const char *fn = "pollNow";
	napi_value argv[2];
	int32_t fd, events;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_int32(env, argv[1], &events, fn, "events must be an int32"))
		return NULL;
	struct pollfd p = { .fd = fd, .events = (short)events };
	int r;
	do
		r = poll(&p, 1, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return bridge_throw_errno(env, "poll", errno, 0, NULL);
	return bridge_make_i64(env, r == 0 ? 0 : p.revents);
}

/* ioctlInt(fd, request): an ioctl that fills an int (SIOCINQ, SIOCOUTQ,
 * SIOCOUTQNSD); returns the int. */
static napi_value ioctl_int(napi_env env, napi_callback_info info)
{
	const char *fn = "ioctlInt";
	napi_value argv[2];
	int32_t fd;
	uint32_t req;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_uint32(env, argv[1], &req, fn, "request must be a uint32"))
		return NULL;
	int v = 0;
	if (ioctl(fd, (unsigned long)req, &v) < 0)
		return bridge_throw_errno(env, "ioctl", errno, 0, NULL);
	return bridge_make_i64(env, v);
}

/* libnftables, loaded when first needed: the network lock is the only user,
 * and a machine without it can still do everything else. */
struct nft_ctx;
static struct {
	void *lib;
	struct nft_ctx *(*ctx_new)(uint32_t flags);
	void (*ctx_free)(struct nft_ctx *ctx);
	int (*buffer_output)(struct nft_ctx *ctx);
	int (*buffer_error)(struct nft_ctx *ctx);
	const char *(*get_error)(struct nft_ctx *ctx);
	const char *(*get_output)(struct nft_ctx *ctx);
	int (*run)(struct nft_ctx *ctx, const char *buf);
} nft;

static const char *nft_load(void)
{
	if (nft.lib)
		return NULL;
	void *lib = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		return dlerror();
	nft.ctx_new = (struct nft_ctx * (*)(uint32_t)) dlsym(lib, "nft_ctx_new");
	nft.ctx_free = (void (*)(struct nft_ctx *))dlsym(lib, "nft_ctx_free");
	nft.buffer_output = (int (*)(struct nft_ctx *))dlsym(lib, "nft_ctx_buffer_output");
	nft.buffer_error = (int (*)(struct nft_ctx *))dlsym(lib, "nft_ctx_buffer_error");
	nft.get_error = (const char *(*)(struct nft_ctx *))dlsym(lib, "nft_ctx_get_error_buffer");
	nft.get_output = (const char *(*)(struct nft_ctx *))dlsym(lib, "nft_ctx_get_output_buffer");
	nft.run = (int (*)(struct nft_ctx *, const char *))dlsym(lib, "nft_run_cmd_from_buffer");
	if (!nft.ctx_new || !nft.ctx_free || !nft.buffer_output || !nft.buffer_error || !nft.get_error ||
	    !nft.get_output || !nft.run) {
		dlclose(lib);
		return "libnftables.so.1 lacks the functions of its API";
	}
	nft.lib = lib;
	return NULL;
}

/* nftRun(commands): runs nft commands (nft's own syntax) through libnftables;
 * returns what they print (a list command's listing); throws with nft's error
 * text when they fail. */
static napi_value nft_run(napi_env env, napi_callback_info info)
{
	const char *fn = "nftRun";
	napi_value argv[1];
	char *cmd = NULL;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_string(env, argv[0], &cmd, fn, "commands must be a string"))
		return NULL;
	const char *why = nft_load();
	if (why) {
		char msg[512];
		snprintf(msg, sizeof(msg), "nftables: cannot load libnftables.so.1 (%s)", why);
		free(cmd);
		napi_throw_error(env, "ENOENT", msg);
		return NULL;
	}
	struct nft_ctx *ctx = nft.ctx_new(0);
	if (!ctx) {
		free(cmd);
		return bridge_throw_errno(env, "nft_ctx_new", ENOMEM, 0, NULL);
	}
	nft.buffer_output(ctx);
	nft.buffer_error(ctx);
	/* libnftables gives up on a netlink call a signal interrupts (EINTR), possibly after the
	 * kernel applied the batch: no signal (a profiler's SIGPROF, a child's SIGCHLD) is taken
	 * by this thread until the transaction is over. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rc = nft.run(ctx, cmd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		const char *err = nft.get_error(ctx);
		char msg[1024];
		snprintf(msg, sizeof(msg), "nftables: %s", err && *err ? err : "the commands failed");
		/* nft's messages end with a newline */
		size_t n = strlen(msg);
		while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
			msg[--n] = 0;
		napi_throw_error(env, "ENFT", msg);
	}
	napi_value out = NULL;
	if (rc == 0) {
		const char *o = nft.get_output(ctx);
		napi_create_string_utf8(env, o ? o : "", NAPI_AUTO_LENGTH, &out);
	}
	nft.ctx_free(ctx);
	free(cmd);
	return out;
}

void bridge_init_inet(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "inetDiag", inet_diag }, { "sockName", sock_name },	    { "peerName", peer_name },
		{ "bindAddr", bind_addr }, { "connectAddr", connect_addr }, { "pollNow", poll_now },
		{ "ioctlInt", ioctl_int }, { "nftRun", nft_run },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
