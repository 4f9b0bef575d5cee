/* Unix sockets: the kernel's own table of them through sock_diag (what /proc
 * does not tell: peer, name, in-flight connections, queue lengths, shutdown), a
 * peek at a receive queue that leaves it as it was (SO_PEEK_OFF + MSG_PEEK,
 * criu's method), the file a bound socket sits on (SIOCUNIXFILE), and bind and
 * connect of a unix address. A path name can be resolved against another
 * directory than tscriu's own cwd or root: a thread with a private fs struct
 * (unshare(CLONE_FS)) changes directory there, so the socket keeps the very
 * name it was bound with. The calls every socket kind shares are sockets.c's. */
#include "bridge.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <linux/unix_diag.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SIOCUNIXFILE
#define SIOCUNIXFILE (SIOCPROTOPRIVATE + 0)
#endif
#ifndef SCM_PIDFD
#define SCM_PIDFD 0x04
#endif

/* More messages than a unix queue can hold under any sndbuf: a queue that
 * never ends is an error, not a hang. */
#define PEEK_MAX_MESSAGES (1 << 22)
#define PEEK_CHUNK	  (64 * 1024)
#define PEEK_MAX_DGRAM	  (1u << 30)

/* One unix_diag_msg and its attributes as {ino, type, state, peer, name,
 * vfsDev, vfsIno, icons, rqlen, wqlen, shutdown}. */
static napi_value diag_entry(napi_env env, const struct nlmsghdr *h, void *ctx)
{
	(void)ctx;
	const struct unix_diag_msg *m = NLMSG_DATA(h);
	napi_value r, icons = NULL;
	napi_create_object(env, &r);
	bridge_set_u32(env, r, "ino", m->udiag_ino);
	bridge_set_u32(env, r, "type", m->udiag_type);
	bridge_set_u32(env, r, "state", m->udiag_state);
	uint32_t peer = 0, vfs_dev = 0, vfs_ino = 0, rqlen = 0, wqlen = 0, shutdown_ = 0;
	napi_value name;
	napi_get_null(env, &name);
	int len = (int)h->nlmsg_len - NLMSG_LENGTH(sizeof(*m));
	for (struct rtattr *a = (struct rtattr *)((char *)m + NLMSG_ALIGN(sizeof(*m))); RTA_OK(a, len);
	     a = RTA_NEXT(a, len)) {
		size_t n = RTA_PAYLOAD(a);
		const void *p = RTA_DATA(a);
		switch (a->rta_type) {
		case UNIX_DIAG_NAME:
			name = bridge_make_buffer(env, p, n);
			break;
		case UNIX_DIAG_VFS:
			if (n >= sizeof(struct unix_diag_vfs)) {
				vfs_ino = ((const struct unix_diag_vfs *)p)->udiag_vfs_ino;
				vfs_dev = ((const struct unix_diag_vfs *)p)->udiag_vfs_dev;
			}
			break;
		case UNIX_DIAG_PEER:
			if (n >= 4)
				memcpy(&peer, p, 4);
			break;
		case UNIX_DIAG_ICONS:
			napi_create_array_with_length(env, n / 4, &icons);
			for (size_t i = 0; i < n / 4; i++) {
				uint32_t ino;
				napi_value v;
				memcpy(&ino, (const char *)p + 4 * i, 4);
				napi_create_uint32(env, ino, &v);
				napi_set_element(env, icons, (uint32_t)i, v);
			}
			break;
		case UNIX_DIAG_RQLEN:
			if (n >= sizeof(struct unix_diag_rqlen)) {
				rqlen = ((const struct unix_diag_rqlen *)p)->udiag_rqueue;
				wqlen = ((const struct unix_diag_rqlen *)p)->udiag_wqueue;
			}
			break;
		case UNIX_DIAG_SHUTDOWN:
			if (n >= 1)
				shutdown_ = *(const uint8_t *)p;
			break;
		}
	}
	if (!icons)
		napi_create_array_with_length(env, 0, &icons);
	bridge_set_u32(env, r, "peer", peer);
	napi_set_named_property(env, r, "name", name);
	bridge_set_u32(env, r, "vfsDev", vfs_dev);
	bridge_set_u32(env, r, "vfsIno", vfs_ino);
	napi_set_named_property(env, r, "icons", icons);
	bridge_set_u32(env, r, "rqlen", rqlen);
	bridge_set_u32(env, r, "wqlen", wqlen);
	bridge_set_u32(env, r, "shutdown", shutdown_);
	return r;
}

/* unixDiag(): every unix socket of tscriu's network namespace, as the kernel's
 * sock_diag reports it (NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, all states). */
static napi_value unix_diag(napi_env env, napi_callback_info info)
{
	(void)info;
	struct unix_diag_req req = { .sdiag_family = AF_UNIX,
				     .udiag_states = ~0u,
				     .udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER |
						   UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN };
	return bridge_sock_diag(env, &req, sizeof(req), sizeof(struct unix_diag_msg), diag_entry, NULL);
}

/* The fds a peek put into tscriu's table, kept in one list so that an error
 * closes every one of them. */
struct passed {
	int *fd;
	size_t n, cap;
};

static void passed_close(struct passed *p, size_t from)
{
	for (size_t i = from; i < p->n; i++)
		close(p->fd[i]);
	p->n = from;
}

/* Takes the fds of a peeked message into `p`: SCM_RIGHTS are kept (the
 * caller's), SCM_PIDFD closed at once. Returns how many SCM_RIGHTS carried, or
 * -1 when `p` could not grow (the message's fds are closed then). */
static ssize_t take_passed_fds(struct msghdr *mh, struct passed *p)
{
	ssize_t rights = 0;
	bool failed = false;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || (c->cmsg_type != SCM_RIGHTS && c->cmsg_type != SCM_PIDFD))
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (c->cmsg_type != SCM_RIGHTS || failed) {
				close(fd);
				continue;
			}
			if (p->n == p->cap) {
				size_t cap = p->cap ? 2 * p->cap : 64;
				int *grown = realloc(p->fd, cap * sizeof(int));
				if (!grown) {
					failed = true;
					close(fd);
					continue;
				}
				p->fd = grown;
				p->cap = cap;
			}
			p->fd[p->n++] = fd;
			rights++;
		}
	}
	return failed ? -1 : rights;
}

/* unixPeekQueue(fd): the receive queue of a socket, message by message
 * ({data, fds}), left in place. The peek offset (SO_PEEK_OFF) walks the queue
 * and is put back as it was. A datagram is read whole (MSG_TRUNC tells its
 * length; a larger buffer rereads it from the same offset); a stream comes in
 * chunks. Zero-length datagrams are kept (the kernel marks one peeked, and a
 * later peek from offset 0 skips it: only the first dump sees it); on a
 * seqpacket socket 0 means end of data (its EOF looks the same). The fds a
 * message carries (SCM_RIGHTS) come as tscriu's own fds, which the peek gave
 * it (close-on-exec): the same open file descriptions as the ones in flight.
 * The caller closes them; on an error none is left open. A stream peek runs on
 * over messages without fds into the next one that has them and stops after
 * it, as a read does: the chunk carries them (criu's images have the same). */
static napi_value unix_peek_queue(napi_env env, napi_callback_info info)
{
	const char *fn = "unixPeekQueue";
	napi_value argv[1];
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32"))
		return NULL;
	int type = 0, orig_off = -1;
	socklen_t l = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) < 0)
		return bridge_throw_errno(env, "getsockopt(SO_TYPE)", errno, 0, NULL);
	l = sizeof(orig_off);
	if (getsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &orig_off, &l) < 0)
		return bridge_throw_errno(env, "getsockopt(SO_PEEK_OFF)", errno, 0, NULL);
	int off = 0;
	if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)) < 0)
		return bridge_throw_errno(env, "setsockopt(SO_PEEK_OFF)", errno, 0, NULL);
	bool stream = type == SOCK_STREAM;
	size_t cap = PEEK_CHUNK;
	char *buf = malloc(cap);
	napi_value arr, out = NULL;
	uint32_t count = 0;
	struct passed held = { 0 };
	napi_create_array(env, &arr);
	if (!buf) {
		bridge_throw_errno(env, "malloc", ENOMEM, 0, NULL);
		goto out;
	}
	for (;;) {
		union {
			char buf[4096];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = { buf, cap };
		struct msghdr mh = {
			.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)
		};
		int flags = MSG_DONTWAIT | MSG_PEEK | MSG_CMSG_CLOEXEC | (stream ? 0 : MSG_TRUNC);
		ssize_t n = recvmsg(fd, &mh, flags);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* EAGAIN: the end of the queue; ENOTCONN: a seqpacket socket with none. */
			if (errno == EAGAIN || errno == ENOTCONN) {
				out = arr;
				goto out;
			}
			bridge_throw_errno(env, "recvmsg(MSG_PEEK)", errno, 0, NULL);
			goto out;
		}
		size_t first = held.n;
		ssize_t rights = take_passed_fds(&mh, &held);
		if (rights < 0) {
			bridge_throw_errno(env, "realloc", ENOMEM, 0, NULL);
			goto out;
		}
		/* Control data cut short: fds in flight tscriu did not get. */
		if (mh.msg_flags & MSG_CTRUNC) {
			bridge_throw_errno(env, "recvmsg(MSG_PEEK): control data truncated", EMSGSIZE, 0, NULL);
			goto out;
		}
		if (!stream && (size_t)n > cap) {
			/* Peeked again whole: the fds come again. */
			passed_close(&held, first);
			if ((size_t)n > PEEK_MAX_DGRAM) {
				bridge_throw_errno(env, "recvmsg(MSG_PEEK)", EMSGSIZE, 0, NULL);
				goto out;
			}
			char *bigger = realloc(buf, (size_t)n);
			if (!bigger) {
				bridge_throw_errno(env, "realloc", ENOMEM, 0, NULL);
				goto out;
			}
			buf = bigger;
			cap = (size_t)n;
			/* The truncated peek moved the offset into the datagram: back to its start. */
			if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)) < 0) {
				bridge_throw_errno(env, "setsockopt(SO_PEEK_OFF)", errno, 0, NULL);
				goto out;
			}
			continue;
		}
		if (n == 0 && type != SOCK_DGRAM) {
			out = arr;
			goto out;
		}
		if (count >= PEEK_MAX_MESSAGES || (size_t)off + (size_t)n > INT32_MAX) {
			bridge_throw_errno(env, "recvmsg(MSG_PEEK)", E2BIG, 0, NULL);
			goto out;
		}
		off += (int)n;
		napi_value m;
		napi_create_object(env, &m);
		napi_set_named_property(env, m, "data", bridge_make_buffer(env, buf, (size_t)n));
		napi_value fds;
		napi_create_array_with_length(env, (size_t)rights, &fds);
		for (size_t i = 0; i < (size_t)rights; i++) {
			napi_value v;
			napi_create_int32(env, held.fd[first + i], &v);
			napi_set_element(env, fds, (uint32_t)i, v);
		}
		napi_set_named_property(env, m, "fds", fds);
		napi_set_element(env, arr, count++, m);
	}
out:
	free(buf);
	if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &orig_off, sizeof(orig_off)) < 0 && out) {
		out = NULL;
		bridge_throw_errno(env, "setsockopt(SO_PEEK_OFF)", errno, 0, NULL);
	}
	if (!out)
		passed_close(&held, 0);
	free(held.fd);
	return out;
}

/* unixSocketFile(fd): an O_PATH fd of the file a socket is bound to
 * (SIOCUNIXFILE, Linux 4.11); ENOENT for a socket without one. */
static napi_value unix_socket_file(napi_env env, napi_callback_info info)
{
	const char *fn = "unixSocketFile";
	napi_value argv[1];
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32"))
		return NULL;
	int f = ioctl(fd, SIOCUNIXFILE);
	if (f < 0)
		return bridge_throw_errno(env, "ioctl(SIOCUNIXFILE)", errno, 0, NULL);
	return bridge_make_i64(env, f);
}

struct addr_call {
	int fd;
	bool connect;
	struct sockaddr_un addr;
	socklen_t len;
	const char *base;
	const char *failed;
	int err;
};

/* A path name is resolved against `base`: the cwd for a relative name, the
 * root (chroot) for an absolute one. Only this thread's fs struct moves. */
static void *addr_thread(void *arg)
{
	struct addr_call *c = arg;
	const char *path = c->addr.sun_path;
	if (unshare(CLONE_FS) < 0) {
		c->failed = "unshare(CLONE_FS)";
		c->err = errno;
		return NULL;
	}
	if (path[0] == '/') {
		if (chdir(c->base) < 0 || chroot(".") < 0) {
			c->failed = "chroot";
			c->err = errno;
			return NULL;
		}
	} else if (chdir(c->base) < 0) {
		c->failed = "chdir";
		c->err = errno;
		return NULL;
	}
	if ((c->connect ? connect(c->fd, (struct sockaddr *)&c->addr, c->len)
			: bind(c->fd, (struct sockaddr *)&c->addr, c->len)) < 0) {
		c->failed = c->connect ? "connect" : "bind";
		c->err = errno;
	}
	return NULL;
}

/* unixBind(fd, name, base) / unixConnect(fd, name, base): name is sun_path as
 * the kernel keeps it (a leading NUL for an abstract name; a path name with
 * its NUL); the address length is exactly sizeof(sa_family_t) + its length. */
static napi_value addr_common(napi_env env, napi_callback_info info, bool conn)
{
	const char *fn = conn ? "unixConnect" : "unixBind";
	napi_value argv[3];
	int32_t fd;
	uint8_t *name;
	size_t len;
	char *base = NULL;
	if (!bridge_get_args_range(env, info, 2, 3, argv, NULL, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_bytes(env, argv[1], &name, &len, fn, "name must be a Buffer"))
		return NULL;
	if (len == 0 || len > sizeof(((struct sockaddr_un *)0)->sun_path))
		return bridge_throw_arg(env, fn, "name must hold 1 to 108 bytes");
	if (!bridge_is_nullish(env, argv[2]) &&
	    !bridge_arg_string(env, argv[2], &base, fn, "base must be a string or null"))
		return NULL;
	struct addr_call c = { .fd = fd,
			       .connect = conn,
			       .len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len) };
	c.addr.sun_family = AF_UNIX;
	memcpy(c.addr.sun_path, name, len);
	char shown[sizeof(c.addr.sun_path) + 2];
	snprintf(shown, sizeof(shown), "%s%.*s", name[0] ? "" : "@", (int)(name[0] ? len : len - 1),
		 (const char *)name + (name[0] ? 0 : 1));
	if (base && name[0]) {
		pthread_t t;
		c.base = base;
		int e = pthread_create(&t, NULL, addr_thread, &c);
		if (e) {
			c.failed = "pthread_create";
			c.err = e;
		} else {
			pthread_join(t, NULL);
		}
	} else if ((conn ? connect(fd, (struct sockaddr *)&c.addr, c.len)
			 : bind(fd, (struct sockaddr *)&c.addr, c.len)) < 0) {
		c.failed = conn ? "connect" : "bind";
		c.err = errno;
	}
	free(base);
	if (c.failed)
		return bridge_throw_errno(env, c.failed, c.err, 0, shown);
	return NULL;
}

static napi_value unix_bind(napi_env env, napi_callback_info info)
{
	return addr_common(env, info, false);
}

static napi_value unix_connect(napi_env env, napi_callback_info info)
{
	return addr_common(env, info, true);
}

/* unixDisconnect(fd): connect(AF_UNSPEC), which leaves a datagram socket
 * without a peer. */
static napi_value unix_disconnect(napi_env env, napi_callback_info info)
{
	const char *fn = "unixDisconnect";
	napi_value argv[1];
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32"))
		return NULL;
	struct sockaddr addr = { .sa_family = AF_UNSPEC };
	if (connect(fd, &addr, sizeof(addr.sa_family)) < 0)
		return bridge_throw_errno(env, "connect(AF_UNSPEC)", errno, 0, NULL);
	return NULL;
}

void bridge_init_unix(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "unixDiag", unix_diag }, { "unixPeekQueue", unix_peek_queue }, { "unixSocketFile", unix_socket_file },
		{ "unixBind", unix_bind }, { "unixConnect", unix_connect },	 { "unixDisconnect", unix_disconnect },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
