/* A TCP connection through the kernel's repair mode, in few crossings into native
 * code: tcpRepairSaveMany reads a process's connections (each one's options and
 * owner, then its copy put in repair mode and read out: state, options, window,
 * sequence numbers and both queues) in one crossing, on two threads;
 * tcpRepairRestore makes one of a new socket in repair mode.
 * orchestrator/net/tcp-repair.ts decides what is saved and restored and why in this
 * order. The fifty-odd calls of a connection take ~28 us here; 952 connections were
 * read in 15 ms on two threads, 27 ms on one. */
#include "bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/sockios.h>

#ifndef SO_GET_FILTER
#define SO_GET_FILTER SO_ATTACH_FILTER
#endif

#define RESTORE_FN "tcpRepairRestore"

/* The room for a failed call's name. */
#define CALL_LEN 128

static int set_int(int fd, int level, int name, int v)
{
	return setsockopt(fd, level, name, &v, sizeof(v));
}

static int get_u32(int fd, int name, uint32_t *v)
{
	socklen_t len = sizeof(*v);
	return getsockopt(fd, SOL_TCP, name, v, &len);
}

/* What a dump reads of a connection in repair mode. */
struct saved_conn {
	uint32_t state, options, wscale, outq, unsent, inq, mss, timestamp;
	uint32_t window[5];
	uint32_t inq_seq, outq_seq;
	/* the queues' bytes (malloc'd; freed by the caller) and how many were peeked */
	char *inq_data, *outq_data;
	uint32_t inq_got, outq_got;
};

/* The queue selected by TCP_REPAIR_QUEUE: its first sequence number and its bytes,
 * peeked one past `len` (so that a queue grown since its size was read shows). 0, or
 * the errno of the call named in *call. */
static int peek_queue(int fd, int queue, uint32_t len, uint32_t *seq, char **data, uint32_t *got, const char *peek_call,
		      const char **call)
{
	*data = NULL;
	*got = 0;
	if (set_int(fd, SOL_TCP, TCP_REPAIR_QUEUE, queue) < 0)
		return *call = "setsockopt(TCP_REPAIR_QUEUE)", errno;
	if (get_u32(fd, TCP_QUEUE_SEQ, seq) < 0)
		return *call = "getsockopt(TCP_QUEUE_SEQ)", errno;
	if (len == 0)
		return 0;
	size_t want = (size_t)len + 1;
	*data = malloc(want);
	if (!*data)
		return *call = "malloc", ENOMEM;
	ssize_t n;
	do
		n = recv(fd, *data, want, MSG_PEEK | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno != EAGAIN)
		return *call = peek_call, errno;
	*got = n < 0 ? 0 : (uint32_t)n;
	return 0;
}

/* A connection already in repair mode read out into *s (its queues malloc'd, also on
 * failure: the caller frees them). 0, or the errno of the call named in *call. */
static int save_conn(int fd, struct saved_conn *s, const char **call)
{
	memset(s, 0, sizeof(*s));
	uint8_t ti[sizeof(struct tcp_info)];
	socklen_t tlen = sizeof(ti);
	memset(ti, 0, sizeof(ti));
	if (getsockopt(fd, SOL_TCP, TCP_INFO, ti, &tlen) < 0)
		return *call = "getsockopt(TCP_INFO)", errno;
	/* struct tcp_info: tcpi_state, ..., tcpi_options at 5, the window scales' nibbles at 6 */
	s->state = ti[0];
	s->options = ti[5];
	s->wscale = ti[6];
	int outq = 0, unsent = 0, inq = 0;
	if (ioctl(fd, SIOCOUTQ, &outq) < 0)
		return *call = "ioctl(SIOCOUTQ)", errno;
	if (ioctl(fd, SIOCOUTQNSD, &unsent) < 0)
		return *call = "ioctl(SIOCOUTQNSD)", errno;
	if (ioctl(fd, SIOCINQ, &inq) < 0)
		return *call = "ioctl(SIOCINQ)", errno;
	if (outq < 0 || unsent < 0 || inq < 0)
		return *call = "a queue's size (the kernel gave a negative one)", EINVAL;
	s->outq = (uint32_t)outq;
	s->unsent = (uint32_t)unsent;
	s->inq = (uint32_t)inq;
	/* in repair mode TCP_MAXSEG gives the clamp the peer announced */
	if (get_u32(fd, TCP_MAXSEG, &s->mss) < 0)
		return *call = "getsockopt(TCP_MAXSEG)", errno;
	if ((s->options & TCPI_OPT_TIMESTAMPS) && get_u32(fd, TCP_TIMESTAMP, &s->timestamp) < 0)
		return *call = "getsockopt(TCP_TIMESTAMP)", errno;
	struct tcp_repair_window w;
	socklen_t wlen = sizeof(w);
	memset(&w, 0, sizeof(w));
	if (getsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &w, &wlen) < 0)
		return *call = "getsockopt(TCP_REPAIR_WINDOW)", errno;
	const uint32_t wv[5] = { w.snd_wl1, w.snd_wnd, w.max_window, w.rcv_wnd, w.rcv_wup };
	memcpy(s->window, wv, sizeof(wv));
	int err = peek_queue(fd, TCP_RECV_QUEUE, s->inq, &s->inq_seq, &s->inq_data, &s->inq_got,
			     "recv(MSG_PEEK) of the receive queue", call);
	if (err)
		return err;
	return peek_queue(fd, TCP_SEND_QUEUE, s->outq, &s->outq_seq, &s->outq_data, &s->outq_got,
			  "recv(MSG_PEEK) of the send queue", call);
}

/* tcpRepairSaveMany: one connection's record in `out`, in int32 words. */
enum {
	REC_ERR,    /* 0, or -1: that fd of the task is not that socket (any more), or failed (errors) */
	REC_FD,	    /* tscriu's copy of the socket, in repair mode; -1 when none is */
	REC_FILTER, /* SO_GET_FILTER's instruction count */
	REC_SAVED,  /* state, options, wscale, outq, unsent, inq, mss, timestamp, window (5), inqSeq, outqSeq */
	REC_DATA = REC_SAVED + 15, /* the receive queue's offset in the data returned, its length, the send queue's */
	REC_OWNER = REC_DATA + 3,  /* the fd's owner, as fdOwner reads it (5 words) */
	REC_OPTS = REC_OWNER + 5,  /* the options of spec, each in its size, as getsockoptsInto lays them out */
};

/* What tcpRepairSaveMany does with its connections, each thread a part of them. */
struct save_many {
	int pidfd;
	size_t n, rec_words, nspec;
	const int32_t *fds;
	const double *inos;
	const int32_t *spec; /* (level, name, size) triples */
	int32_t *out;
	/* each connection's failure (errno, the call) and queues' bytes */
	int *err;
	char (*call)[CALL_LEN];
	struct saved_conn *saved;
};

/* Connection i of m: its options read, its copy put in repair mode and read out. */
static void save_one(struct save_many *m, size_t i)
{
	int32_t *rec = m->out + i * m->rec_words;
	rec[REC_ERR] = -1;
	rec[REC_FD] = -1;
	const char *call = NULL;
	int fd = (int)syscall(SYS_pidfd_getfd, m->pidfd, m->fds[i], 0);
	if (fd < 0) {
		m->err[i] = errno;
		snprintf(m->call[i], sizeof(m->call[i]), "pidfd_getfd");
		return;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode) || (double)st.st_ino != m->inos[i]) {
		close(fd);
		return;
	}
	uint8_t *opt = (uint8_t *)(rec + REC_OPTS);
	for (size_t k = 0; k < m->nspec; k++) {
		const int32_t *t = m->spec + 3 * k;
		socklen_t l = (socklen_t)t[2];
		memset(opt, 0, (size_t)t[2]);
		if (getsockopt(fd, t[0], t[1], opt, &l) < 0) {
			m->err[i] = errno;
			snprintf(m->call[i], sizeof(m->call[i]), "getsockopt(level %d, name %d)", (int)t[0], (int)t[1]);
			close(fd);
			return;
		}
		opt += t[2];
	}
	socklen_t insns = 0;
	if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &insns) < 0) {
		m->err[i] = errno;
		snprintf(m->call[i], sizeof(m->call[i]), "getsockopt(SO_GET_FILTER)");
		close(fd);
		return;
	}
	rec[REC_FILTER] = (int32_t)insns;
	int err = bridge_fd_owner(fd, rec + REC_OWNER, &call);
	if (err) {
		m->err[i] = err;
		snprintf(m->call[i], sizeof(m->call[i]), "%s", call);
		close(fd);
		return;
	}
	if (set_int(fd, SOL_TCP, TCP_REPAIR, 1) < 0) {
		m->err[i] = errno;
		snprintf(m->call[i], sizeof(m->call[i]), "setsockopt(TCP_REPAIR, 1)");
		close(fd);
		return;
	}
	rec[REC_FD] = fd;
	struct saved_conn *s = &m->saved[i];
	err = save_conn(fd, s, &call);
	if (err) {
		m->err[i] = err;
		snprintf(m->call[i], sizeof(m->call[i]), "%s", call);
		return;
	}
	const uint32_t v[15] = { s->state,     s->options,   s->wscale,	   s->outq,	 s->unsent,
				 s->inq,       s->mss,	     s->timestamp, s->window[0], s->window[1],
				 s->window[2], s->window[3], s->window[4], s->inq_seq,	 s->outq_seq };
	memcpy(rec + REC_SAVED, v, sizeof(v));
	rec[REC_ERR] = 0;
}

/* Connection i of a struct save_many (bridge_on_two_threads' item). */
static void save_item(void *m, size_t i)
{
	save_one(m, i);
}

/* tcpRepairSaveMany(pid, fds, inos, spec, out): the connections at `fds` of process
 * `pid` (each checked to be the socket of inode inos[i]) read as a dump reads one, on
 * two threads: each fd's copy (pidfd_getfd), its options by spec's (level, name, size)
 * triples, its filter's length, its owner, then its copy put in repair mode and read out. The record of connection i is
 * out's words from i * (26 + options' size / 4): REC_* above. Returns {data, errors}: the queues' bytes, and for a
 * connection that failed its error (errors[i]; the array empty when none did). A copy in repair mode is in its record
 * also when its reading failed: the caller leaves repair mode and closes it. One crossing for a server's thousand
 * connections, whose fifty-odd calls each would otherwise be a crossing of their own. */
static napi_value tcp_repair_save_many(napi_env env, napi_callback_info info)
{
	const char *fn = "tcpRepairSaveMany";
	napi_value argv[5];
	int32_t pid;
	uint8_t *fds_b, *inos_b, *spec_b, *out_b;
	size_t fds_len, inos_len, spec_len, out_len;
	if (!bridge_get_args(env, info, 5, argv, fn) || !bridge_arg_pid(env, argv[0], &pid, fn) ||
	    !bridge_arg_bytes(env, argv[1], &fds_b, &fds_len, fn, "fds must be an Int32Array") ||
	    !bridge_arg_bytes(env, argv[2], &inos_b, &inos_len, fn, "inos must be a Float64Array") ||
	    !bridge_arg_bytes(env, argv[3], &spec_b, &spec_len, fn, "spec must be an Int32Array") ||
	    !bridge_arg_bytes(env, argv[4], &out_b, &out_len, fn, "out must be an Int32Array"))
		return NULL;
	struct save_many m = { .n = fds_len / 4, .nspec = spec_len / 12 };
	if (fds_len % 4 || inos_len != m.n * 8)
		return bridge_throw_arg(env, fn, "inos must hold one inode per fd");
	if (spec_len % 12)
		return bridge_throw_arg(env, fn, "spec must hold (level, name, size) triples");
	size_t opts = 0;
	for (size_t k = 0; k < m.nspec; k++) {
		int32_t size;
		memcpy(&size, spec_b + 12 * k + 8, 4);
		if (size < 0 || size > 4096 || size % 4)
			return bridge_throw_arg(env, fn, "each option's size must be a multiple of 4, at most 4096");
		opts += (size_t)size;
	}
	m.rec_words = REC_OPTS + opts / 4;
	if (out_len < m.n * m.rec_words * 4 || (uintptr_t)out_b % 4 || (uintptr_t)fds_b % 4 || (uintptr_t)spec_b % 4 ||
	    (uintptr_t)inos_b % 8)
		return bridge_throw_arg(env, fn, "out must hold a record of each connection");
	m.fds = (const int32_t *)fds_b;
	m.inos = (const double *)inos_b;
	m.spec = (const int32_t *)spec_b;
	m.out = (int32_t *)out_b;
	m.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (m.pidfd < 0)
		return bridge_throw_errno(env, "pidfd_open", errno, pid, NULL);
	m.err = calloc(m.n ? m.n : 1, sizeof(*m.err));
	m.call = calloc(m.n ? m.n : 1, sizeof(*m.call));
	m.saved = calloc(m.n ? m.n : 1, sizeof(*m.saved));
	napi_value r = NULL;
	if (!m.err || !m.call || !m.saved) {
		bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
		goto out;
	}
	bridge_on_two_threads(m.n, save_item, &m);

	size_t total = 0;
	for (size_t i = 0; i < m.n; i++)
		total += (size_t)m.saved[i].inq_got + m.saved[i].outq_got;
	napi_value data, errors, e;
	void *bytes;
	napi_create_buffer(env, total, &bytes, &data);
	napi_create_array(env, &errors);
	size_t at = 0;
	for (size_t i = 0; i < m.n; i++) {
		int32_t *rec = m.out + i * m.rec_words;
		struct saved_conn *s = &m.saved[i];
		rec[REC_DATA] = (int32_t)at;
		rec[REC_DATA + 1] = (int32_t)s->inq_got;
		rec[REC_DATA + 2] = (int32_t)s->outq_got;
		if (s->inq_got)
			memcpy((char *)bytes + at, s->inq_data, s->inq_got);
		at += s->inq_got;
		if (s->outq_got)
			memcpy((char *)bytes + at, s->outq_data, s->outq_got);
		at += s->outq_got;
		if (m.err[i]) {
			e = bridge_errno_error(env, m.call[i], m.err[i], 0, NULL);
			napi_set_element(env, errors, (uint32_t)i, e);
		}
	}
	napi_create_object(env, &r);
	napi_set_named_property(env, r, "data", data);
	napi_set_named_property(env, r, "errors", errors);
out:
	for (size_t i = 0; m.saved && i < m.n; i++) {
		free(m.saved[i].inq_data);
		free(m.saved[i].outq_data);
	}
	free(m.saved);
	free(m.call);
	free(m.err);
	close(m.pidfd);
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

/* A failed call of a restore: its errno, its name in call (CALL_LEN bytes). */
static int failed(char *call, int err, const char *fmt, const char *what)
{
	snprintf(call, CALL_LEN, fmt, what);
	return err;
}

/* Sends `len` bytes in chunks the kernel takes: a repair-mode queue wants linear
 * buffers, and a large one may fail with ENOMEM (the chunk is then halved). 0, or the
 * errno of the send named in call. */
static int send_all(int fd, const uint8_t *data, size_t len, const char *what, char *call)
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
		if (r < 0) {
			int err = errno;
			snprintf(call, CALL_LEN, "send to the %s queue (%zu of %zu bytes done)", what, off, len);
			return err;
		}
		if (r == 0) {
			snprintf(call, CALL_LEN, "send to the %s queue (took nothing at %zu of %zu)", what, off, len);
			return EIO;
		}
		off += (size_t)r;
	}
	return 0;
}

#define SET(level, name, v, label)                                                                                     \
	do {                                                                                                           \
		if (set_int(fd, level, name, (int)(v)) < 0)                                                            \
			return failed(call, errno, "setsockopt(%s)", label);                                           \
	} while (0)

/* What tcpRepairRestore does (see there) of a socket in repair mode, without N-API: 0,
 * or the errno of the call named in call (CALL_LEN bytes). */
static int restore_conn(int fd, const struct sockaddr_storage *src, socklen_t src_len,
			const struct sockaddr_storage *dst, socklen_t dst_len, const struct conn *c, const uint8_t *inq,
			size_t inq_len, const uint8_t *outq, size_t outq_len, char *call)
{
	if (c->unsent > outq_len)
		return failed(call, EINVAL, "%s", "more bytes unsent than the send queue holds");
	if (bind(fd, (const struct sockaddr *)src, src_len) < 0)
		return failed(call, errno, "%s", "bind");
	SET(SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE");
	SET(SOL_TCP, TCP_QUEUE_SEQ, c->recv_seq, "TCP_QUEUE_SEQ");
	SET(SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE");
	SET(SOL_TCP, TCP_QUEUE_SEQ, c->send_seq, "TCP_QUEUE_SEQ");
	/* Opening: connected for real (the SYN goes out, from the sequence number just set). */
	if (c->opening)
		SET(SOL_TCP, TCP_REPAIR, 0, "TCP_REPAIR");
	int r;
	do
		r = connect(fd, (const struct sockaddr *)dst, dst_len);
	while (r < 0 && errno == EINTR);
	if (r < 0 && !(c->opening && errno == EINPROGRESS))
		return failed(call, errno, "%s", "connect");
	bool timestamps = (c->opt_mask & TCPI_OPT_TIMESTAMPS) != 0;
	/* Opening: nothing was agreed with the peer yet (no options, no queues, no window). */
	if (c->opening) {
		SET(SOL_TCP, TCP_REPAIR, 1, "TCP_REPAIR");
		if (timestamps)
			SET(SOL_TCP, TCP_TIMESTAMP, c->timestamp, "TCP_TIMESTAMP");
		return 0;
	}
	struct tcp_repair_opt opts[4];
	int n = 0;
	if (c->opt_mask & TCPI_OPT_SACK)
		opts[n++] = (struct tcp_repair_opt){ TCPOPT_SACK_PERMITTED, 0 };
	if (c->opt_mask & TCPI_OPT_WSCALE)
		opts[n++] = (struct tcp_repair_opt){ TCPOPT_WINDOW, c->snd_wscale + (c->rcv_wscale << 16) };
	if (timestamps)
		opts[n++] = (struct tcp_repair_opt){ TCPOPT_TIMESTAMP, 0 };
	opts[n++] = (struct tcp_repair_opt){ TCPOPT_MAXSEG, c->mss };
	if (setsockopt(fd, SOL_TCP, TCP_REPAIR_OPTIONS, opts, (socklen_t)(n * sizeof(opts[0]))) < 0)
		return failed(call, errno, "%s", "setsockopt(TCP_REPAIR_OPTIONS)");
	if (timestamps)
		SET(SOL_TCP, TCP_TIMESTAMP, c->timestamp, "TCP_TIMESTAMP");
	int err;
	if (inq_len) {
		SET(SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE");
		if ((err = send_all(fd, inq, inq_len, "receive", call)))
			return err;
	}
	size_t sent = outq_len - c->unsent;
	if (sent) {
		SET(SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE");
		if ((err = send_all(fd, outq, sent, "send", call)))
			return err;
	}
	/* Never sent: it goes out as the task would have sent it. */
	if (c->unsent) {
		SET(SOL_TCP, TCP_REPAIR, 0, "TCP_REPAIR");
		if ((err = send_all(fd, outq + sent, c->unsent, "unsent part of the send", call)))
			return err;
		SET(SOL_TCP, TCP_REPAIR, 1, "TCP_REPAIR");
	}
	if (c->has_window) {
		struct tcp_repair_window w = { .snd_wl1 = c->window[0],
					       .snd_wnd = c->window[1],
					       .max_window = c->window[2],
					       .rcv_wnd = c->window[3],
					       .rcv_wup = c->window[4] };
		if (setsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &w, sizeof(w)) < 0)
			return failed(call, errno, "%s", "setsockopt(TCP_REPAIR_WINDOW)");
	}
	return 0;
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
	char call[CALL_LEN];
	int err = restore_conn(fd, &src, src_len, &dst, dst_len, &c, inq, inq_len, outq, outq_len, call);
	return err ? bridge_throw_errno(env, call, err, 0, NULL) : NULL;
}

/* tcpRestoreMany: one connection's record in `conns`, in int32 words. */
enum {
	RST_FAMILY,
	RST_V6ONLY,		   /* -1: not set; 0 or 1 */
	RST_CONN,		   /* opening, recvSeq, sendSeq, optMask, sndWscale, rcvWscale, mss, timestamp, unsent,
				    * hasWindow, window (5): 15 words */
	RST_BYTES = RST_CONN + 15, /* offset and length in data of src, dst, inq, outq */
	RST_SETS = RST_BYTES + 8,  /* offset and count in sets of the options set once made */
	RST_WORDS = RST_SETS + 2,
};

/* What tcpRestoreMany does, each thread a part of the connections. */
struct restore_many {
	size_t n;
	const int32_t *conns, *sets;
	const uint8_t *data;
	size_t data_len, nsets;
	int32_t *out;
	int *err;
	char (*call)[CALL_LEN];
};

/* sets' entries: level, name, size (0: the value is an int) and the value or its offset in data */
#define SET_WORDS 4

static bool in_data(const struct restore_many *m, int32_t off, int32_t len)
{
	return off >= 0 && len >= 0 && (size_t)off <= m->data_len && (size_t)len <= m->data_len - (size_t)off;
}

/* Connection i of m made: out[2i] its fd (-1: none), out[2i + 1] the option of sets that
 * failed (-1: none did). 0, or the errno of the call named in m->call[i]. */
static int restore_one(struct restore_many *m, size_t i)
{
	const int32_t *r = m->conns + i * RST_WORDS;
	char *call = m->call[i];
	int32_t *out = m->out + 2 * i;
	out[0] = out[1] = -1;
	int fd = socket(r[RST_FAMILY], SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0)
		return failed(call, errno, "%s", "socket");
	out[0] = fd;
	/* criu's restore_prepare_socket and restore_one_tcp: IPV6_V6ONLY, the port shared while
	 * sockets are made, room for any queue, nothing that blocks, then repair mode */
	if (r[RST_V6ONLY] >= 0)
		SET(SOL_IPV6, IPV6_V6ONLY, r[RST_V6ONLY], "IPV6_V6ONLY");
	SET(SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
	SET(SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
	SET(SOL_SOCKET, SO_SNDBUFFORCE, INT32_MAX / 2, "SO_SNDBUFFORCE");
	SET(SOL_SOCKET, SO_RCVBUFFORCE, INT32_MAX / 2, "SO_RCVBUFFORCE");
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return failed(call, errno, "%s", "fcntl(O_NONBLOCK)");
	SET(SOL_TCP, TCP_REPAIR, 1, "TCP_REPAIR");
	const int32_t *cw = r + RST_CONN, *b = r + RST_BYTES;
	struct conn c = { .opening = cw[0] != 0,
			  .recv_seq = (uint32_t)cw[1],
			  .send_seq = (uint32_t)cw[2],
			  .opt_mask = (uint32_t)cw[3],
			  .snd_wscale = (uint32_t)cw[4],
			  .rcv_wscale = (uint32_t)cw[5],
			  .mss = (uint32_t)cw[6],
			  .timestamp = (uint32_t)cw[7],
			  .unsent = (uint32_t)cw[8],
			  .has_window = cw[9] != 0 };
	for (int k = 0; k < 5; k++)
		c.window[k] = (uint32_t)cw[10 + k];
	struct sockaddr_storage src, dst;
	memset(&src, 0, sizeof(src));
	memset(&dst, 0, sizeof(dst));
	memcpy(&src, m->data + b[0], (size_t)b[1]);
	memcpy(&dst, m->data + b[2], (size_t)b[3]);
	int err = restore_conn(fd, &src, (socklen_t)b[1], &dst, (socklen_t)b[3], &c, m->data + b[4], (size_t)b[5],
			       m->data + b[6], (size_t)b[7], call);
	if (err)
		return err;
	/* the task's options, in the order the caller gave (criu's: flags, IP, socket, TCP) */
	for (int32_t k = 0; k < r[RST_SETS + 1]; k++) {
		const int32_t *o = m->sets + (size_t)(r[RST_SETS] + k) * SET_WORDS;
		int rc;
		if (o[0] == -1) {
			rc = fcntl(fd, F_SETFL, o[3]);
		} else if (o[2] == 0) {
			rc = set_int(fd, o[0], o[1], o[3]);
		} else {
			rc = setsockopt(fd, o[0], o[1], m->data + o[3], (socklen_t)o[2]);
		}
		if (rc < 0) {
			out[1] = k;
			if (o[0] == -1)
				return failed(call, errno, "%s", "fcntl(F_SETFL)");
			snprintf(call, CALL_LEN, "setsockopt(level %d, name %d)", (int)o[0], (int)o[1]);
			return errno;
		}
	}
	return 0;
}

#undef SET

/* Connection i of a struct restore_many (bridge_on_two_threads' item). */
static void restore_item(void *arg, size_t i)
{
	struct restore_many *m = arg;
	m->err[i] = restore_one(m, i);
}

/* tcpRestoreMany(conns, sets, data, out): established connections made as a restore
 * makes each (criu's restore_one_tcp), on two threads, in one crossing: conns holds
 * each one's record (RST_* above: family, IPV6_V6ONLY, what tcpRepairRestore is given,
 * where its sockaddrs and queues are in data, where its options are in sets), sets
 * the options set once it is made, in order (level, name, size, value: an int when
 * size is 0, else size bytes of data at value; level -1: fcntl(F_SETFL, value)). Each
 * is a new TCP socket, its port shared (SO_REUSEADDR, SO_REUSEPORT), its buffers
 * forced wide, non-blocking, in repair mode, made the connection as tcpRepairRestore
 * makes one, then given its options; left in repair mode. out[2i] is connection i's
 * fd (-1: none; the caller closes it), out[2i + 1] the index of its option that failed
 * (-1: none). Returns each failed connection's error (errors[i]; empty when none). */
static napi_value tcp_restore_many(napi_env env, napi_callback_info info)
{
	const char *fn = "tcpRestoreMany";
	napi_value argv[4];
	uint8_t *conns_b, *sets_b, *data_b, *out_b;
	size_t conns_len, sets_len, data_len, out_len;
	if (!bridge_get_args(env, info, 4, argv, fn) ||
	    !bridge_arg_bytes(env, argv[0], &conns_b, &conns_len, fn, "conns must be an Int32Array") ||
	    !bridge_arg_bytes(env, argv[1], &sets_b, &sets_len, fn, "sets must be an Int32Array") ||
	    !bridge_arg_bytes(env, argv[2], &data_b, &data_len, fn, "data must be a Uint8Array") ||
	    !bridge_arg_bytes(env, argv[3], &out_b, &out_len, fn, "out must be an Int32Array"))
		return NULL;
	struct restore_many m = { .n = conns_len / (4 * RST_WORDS), .nsets = sets_len / (4 * SET_WORDS) };
	if (conns_len % (4 * RST_WORDS) || sets_len % (4 * SET_WORDS) || (uintptr_t)conns_b % 4 ||
	    (uintptr_t)sets_b % 4 || (uintptr_t)out_b % 4)
		return bridge_throw_arg(env, fn, "conns and sets must be Int32Arrays of whole records");
	if (out_len < 8 * m.n)
		return bridge_throw_arg(env, fn, "out must hold two words per connection");
	m.conns = (const int32_t *)conns_b;
	m.sets = (const int32_t *)sets_b;
	m.data = data_b;
	m.data_len = data_len;
	m.out = (int32_t *)out_b;
	/* every offset checked before anything is made */
	for (size_t i = 0; i < m.n; i++) {
		const int32_t *r = m.conns + i * RST_WORDS, *b = r + RST_BYTES;
		bool ok = (r[RST_FAMILY] == AF_INET || r[RST_FAMILY] == AF_INET6) && b[1] >= 2 &&
			  b[1] <= (int32_t)sizeof(struct sockaddr_storage) && b[3] >= 2 &&
			  b[3] <= (int32_t)sizeof(struct sockaddr_storage) && r[RST_SETS] >= 0 &&
			  r[RST_SETS + 1] >= 0 && (size_t)r[RST_SETS] + (size_t)r[RST_SETS + 1] <= m.nsets;
		for (int k = 0; ok && k < 4; k++)
			ok = in_data(&m, b[2 * k], b[2 * k + 1]);
		for (int32_t k = 0; ok && k < r[RST_SETS + 1]; k++) {
			const int32_t *o = m.sets + (size_t)(r[RST_SETS] + k) * SET_WORDS;
			ok = o[2] >= 0 && (o[2] == 0 || in_data(&m, o[3], o[2]));
		}
		if (!ok)
			return bridge_throw_arg(env, fn, "a connection's record is out of its arrays' bounds");
	}
	m.err = calloc(m.n ? m.n : 1, sizeof(*m.err));
	m.call = calloc(m.n ? m.n : 1, sizeof(*m.call));
	napi_value errors = NULL;
	if (!m.err || !m.call) {
		bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
		goto out;
	}
	bridge_on_two_threads(m.n, restore_item, &m);
	napi_create_array(env, &errors);
	for (size_t i = 0; i < m.n; i++)
		if (m.err[i])
			napi_set_element(env, errors, (uint32_t)i,
					 bridge_errno_error(env, m.call[i], m.err[i], 0, NULL));
out:
	free(m.err);
	free(m.call);
	return errors;
}

void bridge_init_tcp_repair(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "tcpRepairSaveMany", tcp_repair_save_many },
		{ RESTORE_FN, tcp_repair_restore },
		{ "tcpRestoreMany", tcp_restore_many },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
