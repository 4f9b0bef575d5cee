/* Unix sockets, one case per run (argv[2]); the workload works in its state
 * directory (relative names land there) and checks on every SIGUSR1 ("PASS
 * <case>" or "FAIL <case>: why"). Every check can run any number of times:
 * what it reads out of a queue it sends again, and a connection it accepts is
 * replaced by a new one left waiting.
 *
 *   stream     a stream socketpair with data queued both ways.
 *   dgram      a datagram socketpair with several messages queued each way
 *              (boundaries and order kept; one of 3000 bytes).
 *   seqpacket  the same on a seqpacket socketpair.
 *   listen     a listener bound to the relative name listen.sock (backlog 7,
 *              O_NONBLOCK), a
 *              connection accepted (both ends here, data queued both ways) and
 *              one not yet accepted: accept must give it, connected; and a
 *              listener bound to the absolute name STATE_DIR/abs.sock.
 *   abstract   a datagram socket bound to an abstract name with messages from a
 *              socket connected to it, itself connected since to a third one; and a
 *              listener on another abstract name.
 *   shutdown   a stream pair shut down for writing on one end after sending,
 *              and a socket whose peer is closed with data it left unread.
 *   opts       SO_SNDBUF, SO_RCVBUF, SO_PASSCRED, SO_RCVTIMEO, SO_PRIORITY,
 *              SO_KEEPALIVE, with data queued.
 *   deleted    a datagram socket bound to gone.sock, then removed, with messages
 *              from a socket connected to it; another bound to taken.sock,
 *              removed, and a regular file made with that name since.
 *   inflight   a stream pair with an fd in flight (SCM_RIGHTS): the message
 *              and its fd (a pipe's read end no one else holds) are there.
 *   outside PATH  a stream socket connected to PATH, a listener of someone else's
 *              (the dump must refuse it); its check only says the task runs.
 */
#include "workload.h"

#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static char failure[512];

static int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(failure, sizeof(failure), fmt, ap);
	va_end(ap);
	return -1;
}

static int pair(int type, int sv[2])
{
	if (socketpair(AF_UNIX, type, 0, sv) < 0)
		wl_die("socketpair");
	return 0;
}

static socklen_t addr_of(struct sockaddr_un *a, const char *name, size_t len)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	memcpy(a->sun_path, name, len);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

static int bound(int type, const char *name, size_t len)
{
	struct sockaddr_un a;
	int fd = socket(AF_UNIX, type, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, addr_of(&a, name, len)) < 0)
		wl_die("bind");
	return fd;
}

static int connected(int type, const char *name, size_t len)
{
	struct sockaddr_un a;
	int fd = socket(AF_UNIX, type, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, addr_of(&a, name, len)) < 0)
		wl_die("connect");
	return fd;
}

static void put(int fd, const void *data, size_t len)
{
	if (send(fd, data, len, MSG_NOSIGNAL) != (ssize_t)len)
		wl_die("send");
}

/* The name a socket is bound to is `name` (len bytes of sun_path, the kernel's length). */
static int name_is(int fd, const char *name, size_t len, const char *what)
{
	struct sockaddr_un a;
	socklen_t l = sizeof(a);
	if (getsockname(fd, (struct sockaddr *)&a, &l) < 0)
		return fail("getsockname(%s): %s", what, strerror(errno));
	size_t got = l - offsetof(struct sockaddr_un, sun_path);
	if (got != len || memcmp(a.sun_path, name, len) != 0)
		return fail("%s is bound to %.*s (%zu bytes), not %s (%zu bytes)", what, (int)got, a.sun_path, got,
			    name[0] ? name : name + 1, len);
	return 0;
}

/* Everything a stream socket has queued is `want`; read out, then sent again from `from`. */
static int stream_queue(int fd, int from, const char *want, const char *what)
{
	char buf[4096];
	size_t n = wl_recv_all(fd, buf, sizeof(buf));
	if (n != strlen(want) || memcmp(buf, want, n) != 0)
		return fail("%s holds %zu bytes \"%.*s\", not \"%s\"", what, n, (int)n, buf, want);
	put(from, want, n);
	return 0;
}

/* The messages queued on fd are want[0..n), in order and whole; read out, then sent
 * again from `from` (unless it is -1). */
static int msg_queue(int fd, int from, const char *const *want, const size_t *lens, int n, const char *what)
{
	static char buf[8192];
	for (int i = 0; i < n; i++) {
		ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r < 0)
			return fail("%s: message %d is missing (%s)", what, i, strerror(errno));
		if ((size_t)r != lens[i] || memcmp(buf, want[i], lens[i]) != 0)
			return fail("%s: message %d has %zd bytes, not the %zu of \"%.20s\"", what, i, r, lens[i],
				    want[i]);
	}
	if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0 || errno != EAGAIN)
		return fail("%s: more messages than %d", what, n);
	for (int i = 0; from >= 0 && i < n; i++)
		put(from, want[i], lens[i]);
	return 0;
}

/* Unread data left in place: a peek at offset 0 sees `want`. */
static int peek_is(int fd, const char *want, const char *what)
{
	char buf[256];
	ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_PEEK);
	if (r != (ssize_t)strlen(want) || memcmp(buf, want, (size_t)r) != 0)
		return fail("%s: peek gives %zd bytes, not \"%s\"", what, r, want);
	return 0;
}

/* ---- stream, dgram, seqpacket ---- */

static int sv[2];
static const char *AB = "stream a->b one|two|", *BA = "stream b->a|";
static char big[3000];
static const char *msgs_ab[] = { "first", "second message", big, "last" };
static size_t lens_ab[] = { 5, 14, sizeof(big), 4 };
static const char *msgs_ba[] = { "reply one", "reply two" };
static size_t lens_ba[] = { 9, 9 };

static void setup_stream(void)
{
	pair(SOCK_STREAM, sv);
	put(sv[0], "stream a->b one|", 16);
	put(sv[0], "two|", 4);
	put(sv[1], BA, strlen(BA));
}

static int check_stream(void)
{
	if (stream_queue(sv[1], sv[0], AB, "b") || stream_queue(sv[0], sv[1], BA, "a"))
		return -1;
	return 0;
}

static void setup_msgs(int type)
{
	memset(big, 'B', sizeof(big));
	big[0] = '<';
	big[sizeof(big) - 1] = '>';
	pair(type, sv);
	for (int i = 0; i < 4; i++)
		put(sv[0], msgs_ab[i], lens_ab[i]);
	for (int i = 0; i < 2; i++)
		put(sv[1], msgs_ba[i], lens_ba[i]);
}

static int check_msgs(void)
{
	if (msg_queue(sv[1], sv[0], msgs_ab, lens_ab, 4, "b") || msg_queue(sv[0], sv[1], msgs_ba, lens_ba, 2, "a"))
		return -1;
	return 0;
}

/* ---- listen ---- */

static int lsk, c1, a1, c2, abs_lsk;
static char abs_name[108];

static void setup_listen(void)
{
	unlink("listen.sock");
	lsk = bound(SOCK_STREAM, "listen.sock", sizeof("listen.sock"));
	if (listen(lsk, 7) < 0)
		wl_die("listen");
	c1 = connected(SOCK_STREAM, "listen.sock", sizeof("listen.sock"));
	a1 = accept(lsk, NULL, NULL);
	if (a1 < 0)
		wl_die("accept");
	put(c1, "to accepted|", 12);
	put(a1, "to client|", 10);
	c2 = connected(SOCK_STREAM, "listen.sock", sizeof("listen.sock"));
	snprintf(abs_name, sizeof(abs_name), "%s/abs.sock", wl_dir);
	unlink(abs_name);
	abs_lsk = bound(SOCK_STREAM, abs_name, strlen(abs_name) + 1);
	if (listen(abs_lsk, 2) < 0)
		wl_die("listen");
	/* accept must not block the check; the flag is part of what comes back. */
	if (fcntl(lsk, F_SETFL, O_NONBLOCK) < 0)
		wl_die("fcntl");
}

static int check_listen(void)
{
	int acc = 0;
	socklen_t l = sizeof(acc);
	struct stat st;
	if (getsockopt(lsk, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) < 0 || acc != 1)
		return fail("the listener does not listen (SO_ACCEPTCONN %d)", acc);
	if (!(fcntl(lsk, F_GETFL) & O_NONBLOCK))
		return fail("the listener lost O_NONBLOCK");
	if (name_is(lsk, "listen.sock", sizeof("listen.sock"), "the listener"))
		return -1;
	if (stat("listen.sock", &st) < 0 || !S_ISSOCK(st.st_mode))
		return fail("listen.sock is not a socket file");
	if (stream_queue(a1, c1, "to accepted|", "the accepted socket") ||
	    stream_queue(c1, a1, "to client|", "the client"))
		return -1;
	int a2 = accept4(lsk, NULL, NULL, SOCK_NONBLOCK);
	if (a2 < 0)
		return fail("no connection waits to be accepted: %s", strerror(errno));
	char buf[8];
	put(c2, "hi", 2);
	if (recv(a2, buf, sizeof(buf), 0) != 2 || memcmp(buf, "hi", 2) != 0)
		return fail("the connection accepted does not come from the waiting client");
	put(a2, "yo", 2);
	if (recv(c2, buf, sizeof(buf), 0) != 2 || memcmp(buf, "yo", 2) != 0)
		return fail("the waiting client does not hear from the connection accepted");
	if (accept4(lsk, NULL, NULL, SOCK_NONBLOCK) >= 0 || errno != EAGAIN)
		return fail("more than one connection waited");
	close(a2);
	close(c2);
	c2 = connected(SOCK_STREAM, "listen.sock", sizeof("listen.sock"));
	if (name_is(abs_lsk, abs_name, strlen(abs_name) + 1, "the listener of an absolute name"))
		return -1;
	int c = connected(SOCK_STREAM, abs_name, strlen(abs_name) + 1);
	int s = accept(abs_lsk, NULL, NULL);
	if (s < 0)
		return fail("accept on the listener of an absolute name: %s", strerror(errno));
	close(s);
	close(c);
	return 0;
}

/* ---- abstract ---- */

static char dname[64], sname[64], oname[64];
static size_t dlen, slen, olen;
static int dsrv, dcli, ssrv, dother;
static const char *msgs_abs[] = { "abs one", "abs two", "abs three" };
static size_t lens_abs[] = { 7, 7, 9 };

/* The peer of a connected socket is `name` (len bytes). */
static int peer_is(int fd, const char *name, size_t len, const char *what)
{
	struct sockaddr_un a;
	socklen_t l = sizeof(a);
	if (getpeername(fd, (struct sockaddr *)&a, &l) < 0 || l != offsetof(struct sockaddr_un, sun_path) + len ||
	    memcmp(a.sun_path, name, len) != 0)
		return fail("%s is not connected to the abstract name %s", what, name + 1);
	return 0;
}

/* dcli sends three messages to dsrv, then dsrv connects to dother: from then on only
 * dother may send to dsrv, and the restore has to connect dcli first. */
static void setup_abstract(void)
{
	dlen = 1 + (size_t)snprintf(dname + 1, sizeof(dname) - 1, "tscriu-unixsk-%d-dgram", (int)getpid());
	slen = 1 + (size_t)snprintf(sname + 1, sizeof(sname) - 1, "tscriu-unixsk-%d-stream", (int)getpid());
	olen = 1 + (size_t)snprintf(oname + 1, sizeof(oname) - 1, "tscriu-unixsk-%d-other", (int)getpid());
	dsrv = bound(SOCK_DGRAM, dname, dlen);
	dcli = connected(SOCK_DGRAM, dname, dlen);
	for (int i = 0; i < 3; i++)
		put(dcli, msgs_abs[i], lens_abs[i]);
	dother = bound(SOCK_DGRAM, oname, olen);
	struct sockaddr_un a;
	if (connect(dsrv, (struct sockaddr *)&a, addr_of(&a, oname, olen)) < 0)
		wl_die("connect");
	ssrv = bound(SOCK_STREAM, sname, slen);
	if (listen(ssrv, 3) < 0)
		wl_die("listen");
}

static int check_abstract(void)
{
	struct sockaddr_un a;
	if (name_is(dsrv, dname, dlen, "the datagram socket") || name_is(ssrv, sname, slen, "the listener") ||
	    name_is(dother, oname, olen, "the other datagram socket"))
		return -1;
	if (peer_is(dcli, dname, dlen, "the sender") || peer_is(dsrv, oname, olen, "the datagram socket"))
		return -1;
	if (send(dcli, "x", 1, MSG_DONTWAIT) >= 0 || errno != EPERM)
		return fail("the sender may still send to a socket connected elsewhere");
	if (msg_queue(dsrv, -1, msgs_abs, lens_abs, 3, "the datagram socket"))
		return -1;
	for (int i = 0; i < 3; i++)
		if (sendto(dother, msgs_abs[i], lens_abs[i], 0, (struct sockaddr *)&a, addr_of(&a, dname, dlen)) !=
		    (ssize_t)lens_abs[i])
			return fail("the other socket cannot send to its peer: %s", strerror(errno));
	int c = connected(SOCK_STREAM, sname, slen);
	int s = accept4(ssrv, NULL, NULL, SOCK_NONBLOCK);
	if (s < 0)
		return fail("accept on the abstract listener: %s", strerror(errno));
	close(s);
	close(c);
	return 0;
}

/* ---- shutdown ---- */

static int sh[2], half;

static void setup_shutdown(void)
{
	int tmp[2];
	pair(SOCK_STREAM, sh);
	put(sh[0], "before shutdown|", 16);
	if (shutdown(sh[0], SHUT_WR) < 0)
		wl_die("shutdown");
	pair(SOCK_STREAM, tmp);
	put(tmp[1], "from closed peer|", 17);
	close(tmp[1]);
	half = tmp[0];
}

static int check_shutdown(void)
{
	char buf[8];
	if (peek_is(sh[1], "before shutdown|", "the reading end"))
		return -1;
	struct pollfd p = { .fd = sh[1], .events = POLLIN | POLLRDHUP };
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLRDHUP))
		return fail("the reading end does not see the peer's shutdown (revents %#x)", p.revents);
	if (send(sh[0], "x", 1, MSG_NOSIGNAL) >= 0 || errno != EPIPE)
		return fail("the shut end can still send");
	put(sh[1], "back", 4);
	if (recv(sh[0], buf, sizeof(buf), MSG_DONTWAIT) != 4 || memcmp(buf, "back", 4) != 0)
		return fail("the shut end does not receive any more");
	if (peek_is(half, "from closed peer|", "the socket whose peer is closed"))
		return -1;
	p = (struct pollfd){ .fd = half, .events = POLLIN | POLLRDHUP };
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLHUP))
		return fail("the socket whose peer is closed does not see a hangup (revents %#x)", p.revents);
	if (send(half, "x", 1, MSG_NOSIGNAL) >= 0 || errno != EPIPE)
		return fail("the socket whose peer is closed can still send");
	return 0;
}

/* ---- opts ---- */

static int op[2];
static int want_snd, want_rcv, want_prio;
static struct timeval want_tmo;

static int opt_int(int fd, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);
	getsockopt(fd, SOL_SOCKET, name, &v, &l);
	return v;
}

static void setup_opts(void)
{
	int one = 1, snd = 65536, rcv = 32768, prio = 5;
	struct timeval tmo = { 3, 500000 };
	pair(SOCK_STREAM, op);
	if (setsockopt(op[0], SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd)) ||
	    setsockopt(op[0], SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)) ||
	    setsockopt(op[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) ||
	    setsockopt(op[0], SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof(tmo)) ||
	    setsockopt(op[1], SOL_SOCKET, SO_PRIORITY, &prio, sizeof(prio)) ||
	    setsockopt(op[1], SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)))
		wl_die("setsockopt");
	want_snd = opt_int(op[0], SO_SNDBUF);
	want_rcv = opt_int(op[0], SO_RCVBUF);
	want_prio = opt_int(op[1], SO_PRIORITY);
	socklen_t l = sizeof(want_tmo);
	getsockopt(op[0], SOL_SOCKET, SO_RCVTIMEO, &want_tmo, &l);
	put(op[0], "with options|", 13);
}

static int check_opts(void)
{
	struct timeval tmo = { 0, 0 };
	socklen_t l = sizeof(tmo);
	if (opt_int(op[0], SO_SNDBUF) != want_snd || opt_int(op[0], SO_RCVBUF) != want_rcv)
		return fail("SO_SNDBUF %d SO_RCVBUF %d, not %d %d", opt_int(op[0], SO_SNDBUF),
			    opt_int(op[0], SO_RCVBUF), want_snd, want_rcv);
	if (opt_int(op[1], SO_PASSCRED) != 1 || opt_int(op[0], SO_PASSCRED) != 0)
		return fail("SO_PASSCRED is %d and %d, not 0 and 1", opt_int(op[0], SO_PASSCRED),
			    opt_int(op[1], SO_PASSCRED));
	getsockopt(op[0], SOL_SOCKET, SO_RCVTIMEO, &tmo, &l);
	if (tmo.tv_sec != want_tmo.tv_sec || tmo.tv_usec != want_tmo.tv_usec)
		return fail("SO_RCVTIMEO is %ld.%06ld", (long)tmo.tv_sec, (long)tmo.tv_usec);
	if (opt_int(op[1], SO_PRIORITY) != want_prio || opt_int(op[1], SO_KEEPALIVE) != 1)
		return fail("SO_PRIORITY %d SO_KEEPALIVE %d", opt_int(op[1], SO_PRIORITY),
			    opt_int(op[1], SO_KEEPALIVE));
	return peek_is(op[1], "with options|", "the queue");
}

/* ---- deleted ---- */

static int gone, gone_cli, taken;
static const char *msgs_gone[] = { "ghost one", "ghost two" };
static size_t lens_gone[] = { 9, 9 };

static void setup_deleted(void)
{
	unlink("gone.sock");
	unlink("taken.sock");
	gone = bound(SOCK_DGRAM, "gone.sock", sizeof("gone.sock"));
	gone_cli = connected(SOCK_DGRAM, "gone.sock", sizeof("gone.sock"));
	for (int i = 0; i < 2; i++)
		put(gone_cli, msgs_gone[i], lens_gone[i]);
	taken = bound(SOCK_DGRAM, "taken.sock", sizeof("taken.sock"));
	if (unlink("gone.sock") < 0 || unlink("taken.sock") < 0)
		wl_die("unlink");
	int fd = open("taken.sock", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, "keep me", 7) != 7)
		wl_die("taken.sock");
	close(fd);
}

static int check_deleted(void)
{
	char buf[16] = "";
	struct stat st;
	if (lstat("gone.sock", &st) == 0 || errno != ENOENT)
		return fail("gone.sock exists");
	if (name_is(gone, "gone.sock", sizeof("gone.sock"), "the socket of the removed name") ||
	    name_is(taken, "taken.sock", sizeof("taken.sock"), "the socket of the name taken since"))
		return -1;
	if (msg_queue(gone, gone_cli, msgs_gone, lens_gone, 2, "the socket of the removed name"))
		return -1;
	int fd = open("taken.sock", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || read(fd, buf, sizeof(buf)) != 7 ||
	    memcmp(buf, "keep me", 7) != 0)
		return fail("taken.sock is not the regular file it was");
	close(fd);
	return 0;
}

/* ---- inflight ---- */

static int fl[2];

/* A message carrying an fd (the pipe's read end) waits on fl[1]. */
static void setup_inflight(void)
{
	int p[2];
	pair(SOCK_STREAM, fl);
	if (pipe(p) < 0)
		wl_die("pipe");
	char c[CMSG_SPACE(sizeof(int))];
	memset(c, 0, sizeof(c));
	struct iovec iov = { "fd", 2 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c, .msg_controllen = sizeof(c) };
	struct cmsghdr *ch = CMSG_FIRSTHDR(&mh);
	ch->cmsg_level = SOL_SOCKET;
	ch->cmsg_type = SCM_RIGHTS;
	ch->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(ch), &p[0], sizeof(int));
	if (sendmsg(fl[0], &mh, 0) != 2)
		wl_die("sendmsg");
	close(p[0]);
	close(p[1]);
}

/* The message is still there with its fd: a peek gets a copy of the fd. */
static int check_inflight(void)
{
	char buf[8], c[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c, .msg_controllen = sizeof(c) };
	if (recvmsg(fl[1], &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC) != 2)
		return fail("the message carrying an fd is gone");
	struct cmsghdr *ch = CMSG_FIRSTHDR(&mh);
	int fd = -1;
	struct stat st;
	if (!ch || ch->cmsg_type != SCM_RIGHTS)
		return fail("the message no longer carries its fd");
	memcpy(&fd, CMSG_DATA(ch), sizeof(int));
	int ok = fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
	close(fd);
	return ok ? 0 : fail("the fd in flight is not the pipe");
}

/* ---- outside ---- */

static void setup_outside(const char *path)
{
	connected(SOCK_STREAM, path, strlen(path) + 1);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	if (argc < 3) {
		fprintf(stderr, "usage: %s STATE_DIR CASE\n", argv[0]);
		return 2;
	}
	const char *name = argv[2];
	if (chdir(wl_dir) < 0)
		wl_die("chdir");
	int (*check)(void) = NULL;
	if (!strcmp(name, "stream")) {
		setup_stream();
		check = check_stream;
	} else if (!strcmp(name, "dgram") || !strcmp(name, "seqpacket")) {
		setup_msgs(name[0] == 'd' ? SOCK_DGRAM : SOCK_SEQPACKET);
		check = check_msgs;
	} else if (!strcmp(name, "listen")) {
		setup_listen();
		check = check_listen;
	} else if (!strcmp(name, "abstract")) {
		setup_abstract();
		check = check_abstract;
	} else if (!strcmp(name, "shutdown")) {
		setup_shutdown();
		check = check_shutdown;
	} else if (!strcmp(name, "opts")) {
		setup_opts();
		check = check_opts;
	} else if (!strcmp(name, "deleted")) {
		setup_deleted();
		check = check_deleted;
	} else if (!strcmp(name, "inflight")) {
		setup_inflight();
		check = check_inflight;
	} else if (!strcmp(name, "outside") && argc > 3) {
		setup_outside(argv[3]);
	} else {
		fprintf(stderr, "unknown case %s\n", name);
		return 2;
	}
	wl_install_check_handler();
	wl_ready("case=%s", name);
	/* SIGUSR1 stays blocked except inside sigsuspend: a request arriving while
	 * a check runs is not lost. */
	sigset_t usr1, none;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigemptyset(&none);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	for (;;) {
		while (!wl_check_requested)
			sigsuspend(&none);
		wl_check_requested = 0;
		failure[0] = 0;
		if (!check || check() == 0)
			wl_result("PASS %s", name);
		else
			wl_result("FAIL %s: %s", name, failure);
	}
}
