/* A TCP connection through the kernel's repair mode, one crossing into native
 * code each way: tcpRepairSave reads a connection already in repair mode (its
 * state, options, window, sequence numbers and both queues), tcpRepairRestore
 * makes one of a new socket in repair mode. orchestrator/net/tcp-repair.ts decides
 * what is saved and restored and why in this order; these run its kernel calls as
 * one sequence (no wall-time change was measured against one bridge call each:
 * at a thousand connections the kernel's part dominates). */
#include "bridge.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>

#define SAVE_FN	   "tcpRepairSave"
#define RESTORE_FN "tcpRepairRestore"

static int set_int(int fd, int level, int name, int v)
{
	return setsockopt(fd, level, name, &v, sizeof(v));
}

static int get_u32(int fd, int name, uint32_t *v)
{
	socklen_t len = sizeof(*v);
	return getsockopt(fd, SOL_TCP, name, v, &len);
}

/* The queue selected by TCP_REPAIR_QUEUE: its first sequence number and its bytes,
 * peeked one past `len` (so that a queue grown since its size was read shows). */
static napi_value read_queue(napi_env env, int fd, int queue, uint32_t len, uint32_t *seq, const char *what)
{
	if (set_int(fd, SOL_TCP, TCP_REPAIR_QUEUE, queue) < 0)
		return bridge_throw_errno(env, "setsockopt(TCP_REPAIR_QUEUE)", errno, 0, NULL);
	if (get_u32(fd, TCP_QUEUE_SEQ, seq) < 0)
		return bridge_throw_errno(env, "getsockopt(TCP_QUEUE_SEQ)", errno, 0, NULL);
	size_t want = len == 0 ? 0 : (size_t)len + 1;
	char *buf = malloc(want ? want : 1);
	if (!buf)
		return bridge_throw_errno(env, "malloc", ENOMEM, 0, NULL);
	ssize_t n = 0;
	if (want) {
		do
			n = recv(fd, buf, want, MSG_PEEK | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
	}
	napi_value r = NULL;
	if (n < 0 && errno != EAGAIN) {
		char call[64];
		snprintf(call, sizeof(call), "recv(MSG_PEEK) of the %s queue", what);
		bridge_throw_errno(env, call, errno, 0, NULL);
	} else {
		r = bridge_make_buffer(env, buf, n < 0 ? 0 : (size_t)n);
	}
	free(buf);
	return r;
}

static napi_value ioctl_fail(napi_env env, const char *name)
{
	char call[32];
	snprintf(call, sizeof(call), "ioctl(%s)", name);
	return bridge_throw_errno(env, call, errno, 0, NULL);
}

/* tcpRepairSave(fd): a connection in repair mode as {state, options, sndWscale,
 * rcvWscale, outq, unsent, inq (SIOCOUTQ, SIOCOUTQNSD, SIOCINQ: our FIN counts in the
 * first two), mss, timestamp (0 without timestamps), window (snd_wl1, snd_wnd,
 * max_window, rcv_wnd, rcv_wup), inqSeq, outqSeq, inqData, outqData}. */
static napi_value tcp_repair_save(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, SAVE_FN) ||
	    !bridge_arg_fd(env, argv[0], &fd, SAVE_FN, "fd must be a non-negative int32"))
		return NULL;
	uint8_t ti[sizeof(struct tcp_info)];
	socklen_t tlen = sizeof(ti);
	memset(ti, 0, sizeof(ti));
	if (getsockopt(fd, SOL_TCP, TCP_INFO, ti, &tlen) < 0)
		return bridge_throw_errno(env, "getsockopt(TCP_INFO)", errno, 0, NULL);
	/* struct tcp_info: tcpi_state, ..., tcpi_options at 5, the window scales' nibbles at 6 */
	uint8_t state = ti[0], options = ti[5], wscale = ti[6];
	int outq = 0, unsent = 0, inq = 0;
	if (ioctl(fd, SIOCOUTQ, &outq) < 0)
		return ioctl_fail(env, "SIOCOUTQ");
	if (ioctl(fd, SIOCOUTQNSD, &unsent) < 0)
		return ioctl_fail(env, "SIOCOUTQNSD");
	if (ioctl(fd, SIOCINQ, &inq) < 0)
		return ioctl_fail(env, "SIOCINQ");
	if (outq < 0 || unsent < 0 || inq < 0) {
		napi_throw_error(env, "EINVAL", SAVE_FN ": the kernel gave a negative queue size");
		return NULL;
	}
	/* in repair mode TCP_MAXSEG gives the clamp the peer announced */
	uint32_t mss = 0, timestamp = 0;
	if (get_u32(fd, TCP_MAXSEG, &mss) < 0)
		return bridge_throw_errno(env, "getsockopt(TCP_MAXSEG)", errno, 0, NULL);
	if ((options & TCPI_OPT_TIMESTAMPS) && get_u32(fd, TCP_TIMESTAMP, &timestamp) < 0)
		return bridge_throw_errno(env, "getsockopt(TCP_TIMESTAMP)", errno, 0, NULL);
	struct tcp_repair_window w;
	socklen_t wlen = sizeof(w);
	memset(&w, 0, sizeof(w));
	if (getsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &w, &wlen) < 0)
		return bridge_throw_errno(env, "getsockopt(TCP_REPAIR_WINDOW)", errno, 0, NULL);
	uint32_t inq_seq = 0, outq_seq = 0;
	napi_value inq_data = read_queue(env, fd, TCP_RECV_QUEUE, (uint32_t)inq, &inq_seq, "receive");
	if (!inq_data)
		return NULL;
	napi_value outq_data = read_queue(env, fd, TCP_SEND_QUEUE, (uint32_t)outq, &outq_seq, "send");
	if (!outq_data)
		return NULL;

	napi_value r, win, v;
	napi_create_object(env, &r);
	bridge_set_u32(env, r, "state", state);
	bridge_set_u32(env, r, "options", options);
	bridge_set_u32(env, r, "sndWscale", wscale & 0x0f);
	bridge_set_u32(env, r, "rcvWscale", wscale >> 4);
	bridge_set_u32(env, r, "outq", (uint32_t)outq);
	bridge_set_u32(env, r, "unsent", (uint32_t)unsent);
	bridge_set_u32(env, r, "inq", (uint32_t)inq);
	bridge_set_u32(env, r, "mss", mss);
	bridge_set_u32(env, r, "timestamp", timestamp);
	napi_create_array_with_length(env, 5, &win);
	const uint32_t wv[5] = { w.snd_wl1, w.snd_wnd, w.max_window, w.rcv_wnd, w.rcv_wup };
	for (uint32_t i = 0; i < 5; i++) {
		napi_create_uint32(env, wv[i], &v);
		napi_set_element(env, win, i, v);
	}
	napi_set_named_property(env, r, "window", win);
	bridge_set_u32(env, r, "inqSeq", inq_seq);
	bridge_set_u32(env, r, "outqSeq", outq_seq);
	napi_set_named_property(env, r, "inqData", inq_data);
	napi_set_named_property(env, r, "outqData", outq_data);
	return r;
}

/* What tcpRepairRestore is given of a connection besides its addresses. */
struct conn {
	bool opening;
	uint32_t recv_seq, send_seq;
	uint32_t opt_mask, snd_wscale, rcv_wscale, mss, timestamp;
	uint32_t unsent;
	bool has_window;
	uint32_t window[5];
};

static bool prop_u32(napi_env env, napi_value obj, const char *key, uint32_t *out)
{
	napi_value v;
	char what[80];
	if (!bridge_opt_prop(env, obj, key, &v)) {
		snprintf(what, sizeof(what), "the connection's %s is missing", key);
		bridge_throw_arg(env, RESTORE_FN, what);
		return false;
	}
	snprintf(what, sizeof(what), "the connection's %s must be a uint32", key);
	return bridge_arg_uint32(env, v, out, RESTORE_FN, what);
}

static bool read_conn(napi_env env, napi_value obj, struct conn *c)
{
	memset(c, 0, sizeof(*c));
	uint32_t opening = 0;
	if (!prop_u32(env, obj, "opening", &opening) || !prop_u32(env, obj, "recvSeq", &c->recv_seq) ||
	    !prop_u32(env, obj, "sendSeq", &c->send_seq) || !prop_u32(env, obj, "optMask", &c->opt_mask) ||
	    !prop_u32(env, obj, "sndWscale", &c->snd_wscale) || !prop_u32(env, obj, "rcvWscale", &c->rcv_wscale) ||
	    !prop_u32(env, obj, "mss", &c->mss) || !prop_u32(env, obj, "timestamp", &c->timestamp) ||
	    !prop_u32(env, obj, "unsent", &c->unsent))
		return false;
	c->opening = opening != 0;
	napi_value win, v;
	if (bridge_opt_prop(env, obj, "window", &win)) {
		for (uint32_t i = 0; i < 5; i++) {
			if (napi_get_element(env, win, i, &v) != napi_ok ||
			    !bridge_arg_uint32(env, v, &c->window[i], RESTORE_FN,
					       "the connection's window must be 5 uint32s"))
				return false;
		}
		c->has_window = true;
	}
	return true;
}

/* A sockaddr given as its bytes (orchestrator/fds/inet-common.ts lays them out). */
static bool arg_sockaddr(napi_env env, napi_value v, struct sockaddr_storage *ss, socklen_t *len, const char *what)
{
	uint8_t *addr;
	size_t n;
	if (!bridge_arg_bytes(env, v, &addr, &n, RESTORE_FN, what))
		return false;
	if (n < sizeof(sa_family_t) || n > sizeof(*ss)) {
		bridge_throw_arg(env, RESTORE_FN, what);
		return false;
	}
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, addr, n);
	*len = (socklen_t)n;
	return true;
}

/* A setsockopt of the restore that failed: thrown naming the option. */
static bool set_or_throw(napi_env env, int fd, int level, int name, int v, const char *label)
{
	if (set_int(fd, level, name, v) == 0)
		return true;
	char call[64];
	snprintf(call, sizeof(call), "setsockopt(%s)", label);
	bridge_throw_errno(env, call, errno, 0, NULL);
	return false;
}

/* Sends `len` bytes in chunks the kernel takes: a repair-mode queue wants linear
 * buffers, and a large one may fail with ENOMEM (the chunk is then halved). */
static bool send_all(napi_env env, int fd, const uint8_t *data, size_t len, const char *what)
{
	size_t max = len, off = 0;
	while (off < len) {
		size_t n = len - off < max ? len - off : max;
		ssize_t r;
		do
			r = send(fd, data + off, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		while (r < 0 && errno == EINTR);
		if (r < 0 && max > 1024 && (errno == ENOMEM || errno == EAGAIN || errno == ENOBUFS)) {
			max >>= 1;
			continue;
		}
		char call[128];
		if (r < 0) {
			snprintf(call, sizeof(call), "send to the %s queue (%zu of %zu bytes done)", what, off, len);
			bridge_throw_errno(env, call, errno, 0, NULL);
			return false;
		}
		if (r == 0) {
			snprintf(call, sizeof(call), "send to the %s queue took nothing at %zu of %zu bytes", what, off,
				 len);
			napi_throw_error(env, "EIO", call);
			return false;
		}
		off += (size_t)r;
	}
	return true;
}

/* tcpRepairRestore(fd, src, dst, conn, inq, outq): `fd`, a new TCP socket made ready
 * by the caller (buffers widened, non-blocking, in repair mode), made the connection:
 * bound to the sockaddr `src`, the queues' first sequence numbers (conn.recvSeq,
 * conn.sendSeq) set, connected to `dst` without a handshake; then (not conn.opening)
 * the options agreed with the peer (conn.optMask: TCPI_OPT_*, the scales, conn.mss),
 * the timestamp, the receive queue (inq), the sent part of the send queue (outq but
 * its last conn.unsent bytes) and the window (conn.window, when given). The unsent
 * bytes are sent out of repair mode. An opening connection (SYN_SENT) is connected
 * out of repair mode instead (its SYN goes again) and gets only its timestamp. Left
 * in repair mode. */
static napi_value tcp_repair_restore(napi_env env, napi_callback_info info)
{
	napi_value argv[6];
	int32_t fd;
	struct sockaddr_storage src, dst;
	socklen_t src_len, dst_len;
	struct conn c;
	uint8_t *inq, *outq;
	size_t inq_len, outq_len;
	if (!bridge_get_args(env, info, 6, argv, RESTORE_FN) ||
	    !bridge_arg_fd(env, argv[0], &fd, RESTORE_FN, "fd must be a non-negative int32") ||
	    !arg_sockaddr(env, argv[1], &src, &src_len, "src must be a sockaddr of 2 to 128 bytes") ||
	    !arg_sockaddr(env, argv[2], &dst, &dst_len, "dst must be a sockaddr of 2 to 128 bytes") ||
	    !read_conn(env, argv[3], &c) ||
	    !bridge_arg_bytes(env, argv[4], &inq, &inq_len, RESTORE_FN, "inq must be the receive queue's bytes") ||
	    !bridge_arg_bytes(env, argv[5], &outq, &outq_len, RESTORE_FN, "outq must be the send queue's bytes"))
		return NULL;
	if (c.unsent > outq_len)
		return bridge_throw_arg(env, RESTORE_FN, "more bytes unsent than the send queue holds");
	if (bind(fd, (struct sockaddr *)&src, src_len) < 0)
		return bridge_throw_errno(env, "bind", errno, 0, NULL);
	if (!set_or_throw(env, fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE") ||
	    !set_or_throw(env, fd, SOL_TCP, TCP_QUEUE_SEQ, (int)c.recv_seq, "TCP_QUEUE_SEQ") ||
	    !set_or_throw(env, fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE") ||
	    !set_or_throw(env, fd, SOL_TCP, TCP_QUEUE_SEQ, (int)c.send_seq, "TCP_QUEUE_SEQ"))
		return NULL;
	/* Opening: connected for real (the SYN goes out, from the sequence number just set). */
	if (c.opening && !set_or_throw(env, fd, SOL_TCP, TCP_REPAIR, 0, "TCP_REPAIR"))
		return NULL;
	int r;
	do
		r = connect(fd, (struct sockaddr *)&dst, dst_len);
	while (r < 0 && errno == EINTR);
	if (r < 0 && !(c.opening && errno == EINPROGRESS))
		return bridge_throw_errno(env, "connect", errno, 0, NULL);
	bool timestamps = (c.opt_mask & TCPI_OPT_TIMESTAMPS) != 0;
	/* Opening: nothing was agreed with the peer yet (no options, no queues, no window). */
	if (c.opening) {
		if (set_or_throw(env, fd, SOL_TCP, TCP_REPAIR, 1, "TCP_REPAIR") && timestamps)
			set_or_throw(env, fd, SOL_TCP, TCP_TIMESTAMP, (int)c.timestamp, "TCP_TIMESTAMP");
		return NULL;
	}
	struct tcp_repair_opt opts[4];
	int n = 0;
	if (c.opt_mask & TCPI_OPT_SACK)
		opts[n++] = (struct tcp_repair_opt){ TCPOPT_SACK_PERMITTED, 0 };
	if (c.opt_mask & TCPI_OPT_WSCALE)
		opts[n++] = (struct tcp_repair_opt){ TCPOPT_WINDOW, c.snd_wscale + (c.rcv_wscale << 16) };
	if (timestamps)
		opts[n++] = (struct tcp_repair_opt){ TCPOPT_TIMESTAMP, 0 };
	opts[n++] = (struct tcp_repair_opt){ TCPOPT_MAXSEG, c.mss };
	if (setsockopt(fd, SOL_TCP, TCP_REPAIR_OPTIONS, opts, (socklen_t)(n * sizeof(opts[0]))) < 0)
		return bridge_throw_errno(env, "setsockopt(TCP_REPAIR_OPTIONS)", errno, 0, NULL);
	if (timestamps && !set_or_throw(env, fd, SOL_TCP, TCP_TIMESTAMP, (int)c.timestamp, "TCP_TIMESTAMP"))
		return NULL;
	if (inq_len && (!set_or_throw(env, fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE") ||
			!send_all(env, fd, inq, inq_len, "receive")))
		return NULL;
	size_t sent = outq_len - c.unsent;
	if (sent && (!set_or_throw(env, fd, SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE") ||
		     !send_all(env, fd, outq, sent, "send")))
		return NULL;
	/* Never sent: it goes out as the task would have sent it. */
	if (c.unsent && (!set_or_throw(env, fd, SOL_TCP, TCP_REPAIR, 0, "TCP_REPAIR") ||
			 !send_all(env, fd, outq + sent, c.unsent, "unsent part of the send") ||
			 !set_or_throw(env, fd, SOL_TCP, TCP_REPAIR, 1, "TCP_REPAIR")))
		return NULL;
	if (c.has_window) {
		struct tcp_repair_window w = { .snd_wl1 = c.window[0],
					       .snd_wnd = c.window[1],
					       .max_window = c.window[2],
					       .rcv_wnd = c.window[3],
					       .rcv_wup = c.window[4] };
		if (setsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &w, sizeof(w)) < 0)
			return bridge_throw_errno(env, "setsockopt(TCP_REPAIR_WINDOW)", errno, 0, NULL);
	}
	return NULL;
}

void bridge_init_tcp_repair(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ SAVE_FN, tcp_repair_save },
		{ RESTORE_FN, tcp_repair_restore },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
