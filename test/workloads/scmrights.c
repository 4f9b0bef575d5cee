/* Files in flight (SCM_RIGHTS) in a unix socket's receive queue, one case per run
 * (argv[2]): stream, dgram or seqpacket -- the socket type of the pair the messages
 * wait in. Six messages wait on sk[1], sent from sk[0]:
 *
 *   1 "plain-one"    no fds
 *   2 "held"         the write end of a pipe the task holds too (both ends)
 *   3 "gone-pipe"    both ends of a pipe no one holds any more (two fds in one message)
 *   4 "plain-two"    no fds
 *   5 "file+sock"    a regular file (STATE_DIR/data, offset 5) and one end of a
 *                    socketpair, neither held any more; the socket has "inner"
 *                    queued from the other end, which the task holds
 *   6 "plain-three"  no fds
 *
 * The check (SIGUSR1) receives them one by one (a stream, which has no boundaries, as a
 * reader with a large buffer does: a read runs on over messages without fds into the
 * next that has them and stops after it, so 1+2, 3, 4+5, 6) and checks each fd: the pipe end
 * received is the task's own description (kcmp) and what it writes reads back from
 * the task's read end; the two ends of the gone pipe are one pipe; the file is the
 * same inode at offset 5 with its bytes; the socket reads "inner" and reaches the
 * task's end. Then it sends the six messages again, with the same fds, and closes its
 * copies: the queue is as it was, and the check can run again.
 *
 * The case "epoll": on a datagram pair, a message passing an epoll watching sk[1] (EPOLLIN,
 * data 42), not held any more, then "after"; the check receives the first, finds the
 * epoll ready (sk[1] holds "after"), and sends both again. The case "timerfd": the same
 * message passes a timerfd too (100 s, interval 7 s), which the check finds armed.
 *
 * The case "tcp": on a datagram pair, a message passing the client end of a loopback TCP
 * connection, not held any more, with "inner" unread in its receive queue; the task
 * holds the listener and the accepted end. The check receives it, reads "inner", has the
 * accepted end send it again, sends "ping" through the connection, and passes it back.
 *
 * The case "nested": a datagram socket a[1] in flight in its own queue (sent to itself
 * through a[0], a loop), and in flight in the queue of b[1] (sent through b[0]); the
 * task holds a[0], b[0] and b[1]. The check receives a[1] from b[1], a[1] again from
 * a[1]'s queue (the same socket: kcmp), checks a[0] reaches it, and sends both back.
 */
#include "workload.h"

#include <arpa/inet.h>
#include <linux/kcmp.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/syscall.h>

#define NMSG   6
#define MAXFDS 4

static int sk[2], hp[2], op1, sk_type;
static ino_t file_ino;

struct msg {
	const char *data;
	int nfds;
	int fds[MAXFDS];
};

static struct msg msgs[NMSG];

static void send_msg(const struct msg *m)
{
	union {
		char buf[CMSG_SPACE(MAXFDS * sizeof(int))];
		struct cmsghdr align;
	} c;
	memset(&c, 0, sizeof(c));
	struct iovec iov = { (void *)m->data, strlen(m->data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (m->nfds) {
		mh.msg_control = c.buf;
		mh.msg_controllen = CMSG_SPACE((size_t)m->nfds * sizeof(int));
		struct cmsghdr *ch = CMSG_FIRSTHDR(&mh);
		ch->cmsg_level = SOL_SOCKET;
		ch->cmsg_type = SCM_RIGHTS;
		ch->cmsg_len = CMSG_LEN((size_t)m->nfds * sizeof(int));
		memcpy(CMSG_DATA(ch), m->fds, (size_t)m->nfds * sizeof(int));
	}
	if (sendmsg(sk[0], &mh, 0) != (ssize_t)iov.iov_len)
		wl_die("sendmsg");
}

static void setup(int type)
{
	int gp[2], op[2];
	sk_type = type;
	if (socketpair(AF_UNIX, type, 0, sk) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, op) < 0)
		wl_die("socketpair");
	if (pipe(hp) < 0 || pipe(gp) < 0)
		wl_die("pipe");
	int f = open("data", O_RDWR | O_CREAT | O_TRUNC, 0644);
	struct stat st;
	if (f < 0 || write(f, "0123456789abcdef", 16) != 16 || lseek(f, 5, SEEK_SET) != 5 || fstat(f, &st) < 0)
		wl_die("data file");
	file_ino = st.st_ino;
	if (write(op[1], "inner", 5) != 5)
		wl_die("write inner");
	op1 = op[1];
	msgs[0] = (struct msg){ "plain-one", 0, { 0 } };
	msgs[1] = (struct msg){ "held", 1, { hp[1] } };
	msgs[2] = (struct msg){ "gone-pipe", 2, { gp[0], gp[1] } };
	msgs[3] = (struct msg){ "plain-two", 0, { 0 } };
	msgs[4] = (struct msg){ "file+sock", 2, { f, op[0] } };
	msgs[5] = (struct msg){ "plain-three", 0, { 0 } };
	for (int i = 0; i < NMSG; i++)
		send_msg(&msgs[i]);
	close(gp[0]);
	close(gp[1]);
	close(f);
	close(op[0]);
}

static void setup_stream(void)
{
	setup(SOCK_STREAM);
}

static void setup_dgram(void)
{
	setup(SOCK_DGRAM);
}

static void setup_seqpacket(void)
{
	setup(SOCK_SEQPACKET);
}

/* Message i into got[]: on a stream, with the messages without fds before it (see above). */
static int recv_msg(int i, int *got)
{
	char want[64] = { 0 };
	int from = i;
	if (sk_type == SOCK_STREAM)
		while (from > 0 && msgs[from - 1].nfds == 0)
			from--;
	for (int k = from; k <= i; k++)
		strcat(want, msgs[k].data);
	union {
		char buf[CMSG_SPACE(MAXFDS * sizeof(int))];
		struct cmsghdr align;
	} c;
	char data[64];
	size_t len = strlen(want);
	/* A larger buffer: a message that came out longer is seen. */
	struct iovec iov = { data, sizeof(data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf, .msg_controllen = sizeof(c.buf) };
	ssize_t n = recvmsg(sk[1], &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n != (ssize_t)len || memcmp(data, want, len) != 0)
		return wl_fail("message %d (%s): got %zd bytes", i + 1, want, n);
	int nfds = 0;
	for (struct cmsghdr *ch = CMSG_FIRSTHDR(&mh); ch; ch = CMSG_NXTHDR(&mh, ch)) {
		if (ch->cmsg_level != SOL_SOCKET || ch->cmsg_type != SCM_RIGHTS)
			return wl_fail("message %d: a control message of type %d", i + 1, ch->cmsg_type);
		int k = (int)((ch->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int j = 0; j < k && nfds < MAXFDS; j++)
			memcpy(&got[nfds++], CMSG_DATA(ch) + (size_t)j * sizeof(int), sizeof(int));
	}
	if (nfds != msgs[i].nfds)
		return wl_fail("message %d (%s): %d fds, not %d", i + 1, msgs[i].data, nfds, msgs[i].nfds);
	return 0;
}

/* Writes `what` into w and reads it back from r. */
static int through(int w, int r, const char *what, const char *where)
{
	char buf[32] = { 0 };
	size_t n = strlen(what);
	if (write(w, what, n) != (ssize_t)n || read(r, buf, sizeof(buf)) != (ssize_t)n || memcmp(buf, what, n) != 0)
		return wl_fail("%s: wrote %s, read back %s", where, what, buf);
	return 0;
}

static int check_fds(int got[NMSG][MAXFDS])
{
	pid_t me = getpid();
	if (syscall(SYS_kcmp, me, me, KCMP_FILE, got[1][0], hp[1]) != 0)
		return wl_fail("the pipe end received is not the task's own (kcmp)");
	if (through(got[1][0], hp[0], "held", "the held pipe"))
		return -1;
	if (through(got[2][1], got[2][0], "gone", "the pipe in flight"))
		return -1;
	struct stat st;
	if (fstat(got[4][0], &st) < 0 || st.st_ino != file_ino)
		return wl_fail("the file received is not STATE_DIR/data");
	char b[4] = { 0 };
	if (lseek(got[4][0], 0, SEEK_CUR) != 5 || pread(got[4][0], b, 3, 5) != 3 || memcmp(b, "567", 3) != 0)
		return wl_fail("the file received is not at offset 5 (%ld), or its bytes are not there (%s)",
			       (long)lseek(got[4][0], 0, SEEK_CUR), b);
	char in[8] = { 0 };
	if (recv(got[4][1], in, sizeof(in), MSG_DONTWAIT) != 5 || memcmp(in, "inner", 5) != 0)
		return wl_fail("the socket in flight does not hold \"inner\" (%s)", in);
	if (write(op1, "inner", 5) != 5)
		return wl_fail("write inner again");
	if (through(got[4][1], op1, "ping", "the socket in flight"))
		return -1;
	return 0;
}

static int check(void)
{
	int got[NMSG][MAXFDS];
	memset(got, -1, sizeof(got));
	int r = 0;
	for (int i = 0; i < NMSG && r == 0; i++)
		if (sk_type != SOCK_STREAM || msgs[i].nfds > 0 || i == NMSG - 1)
			r = recv_msg(i, got[i]);
	char extra[8];
	if (r == 0 && recv(sk[1], extra, sizeof(extra), MSG_DONTWAIT) >= 0)
		r = wl_fail("more than the six messages were queued");
	if (r == 0)
		r = check_fds(got);
	/* Back in the queue as they were, whatever was found. */
	for (int i = 0; i < NMSG; i++) {
		struct msg m = msgs[i];
		memcpy(m.fds, got[i], sizeof(m.fds));
		if (r == 0)
			send_msg(&m);
		for (int j = 0; j < MAXFDS; j++)
			if (got[i][j] >= 0)
				close(got[i][j]);
	}
	return r;
}

static int with_timer;

static void setup_epoll(void)
{
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sk) < 0)
		wl_die("socketpair");
	int ep = epoll_create1(0), t = timerfd_create(CLOCK_MONOTONIC, 0);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 42 };
	struct itimerspec its = { .it_interval = { 7, 0 }, .it_value = { 100, 0 } };
	if (ep < 0 || t < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, sk[1], &ev) < 0 || timerfd_settime(t, 0, &its, NULL) < 0)
		wl_die("epoll, timerfd");
	msgs[0] = (struct msg){ "ep", with_timer ? 2 : 1, { ep, t } };
	msgs[1] = (struct msg){ "after", 0, { 0 } };
	send_msg(&msgs[0]);
	send_msg(&msgs[1]);
	close(ep);
	close(t);
}

static int check_epoll(void)
{
	int got[2][MAXFDS];
	memset(got, -1, sizeof(got));
	int r = recv_msg(0, got[0]);
	struct epoll_event ev = { 0 };
	struct itimerspec its = { 0 };
	if (r == 0 && (epoll_wait(got[0][0], &ev, 1, 0) != 1 || ev.data.u64 != 42 || !(ev.events & EPOLLIN)))
		r = wl_fail("the epoll received does not report sk[1] ready (data %llu)",
			    (unsigned long long)ev.data.u64);
	if (r == 0 && with_timer &&
	    (timerfd_gettime(got[0][1], &its) < 0 || its.it_interval.tv_sec != 7 || its.it_value.tv_sec > 100 ||
	     (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)))
		r = wl_fail("the timerfd received is not armed (%lds, interval %lds)", (long)its.it_value.tv_sec,
			    (long)its.it_interval.tv_sec);
	if (r == 0)
		r = recv_msg(1, got[1]);
	if (r == 0) {
		struct msg m = msgs[0];
		memcpy(m.fds, got[0], sizeof(m.fds));
		send_msg(&m);
		send_msg(&msgs[1]);
	}
	for (int j = 0; j < 2; j++)
		if (got[0][j] >= 0)
			close(got[0][j]);
	return r;
}

static void setup_timerfd(void)
{
	with_timer = 1;
	setup_epoll();
}

static int tcp_server;

static void setup_tcp(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	/* the pair first: sk[1] is fd 4, as in the other cases */
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sk) < 0)
		wl_die("socketpair");
	int lsk = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);
	if (lsk < 0 || c < 0)
		wl_die("socket");
	if (bind(lsk, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lsk, 1) < 0 ||
	    getsockname(lsk, (struct sockaddr *)&a, &l) < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
		wl_die("connect");
	tcp_server = accept(lsk, NULL, NULL);
	if (tcp_server < 0 || write(tcp_server, "inner", 5) != 5)
		wl_die("accept");
	msgs[0] = (struct msg){ "tcp", 1, { c } };
	send_msg(&msgs[0]);
	close(c);
}

static int check_tcp(void)
{
	int got[MAXFDS];
	memset(got, -1, sizeof(got));
	int r = recv_msg(0, got);
	char in[8] = { 0 };
	if (r == 0 && (recv(got[0], in, sizeof(in), MSG_DONTWAIT) != 5 || memcmp(in, "inner", 5) != 0))
		r = wl_fail("the connection in flight does not hold \"inner\" (%s)", in);
	if (r == 0 && write(tcp_server, "inner", 5) != 5)
		r = wl_fail("write inner again");
	if (r == 0 && through(got[0], tcp_server, "ping", "the connection in flight"))
		r = -1;
	if (r == 0) {
		struct msg m = msgs[0];
		m.fds[0] = got[0];
		send_msg(&m);
	}
	if (got[0] >= 0)
		close(got[0]);
	return r;
}

static int a0, b0, b1;

/* Sends fd over `via` with the one-byte message `tag`. */
static void pass(int via, int fd, const char *tag)
{
	struct msg m = { tag, 1, { fd } };
	sk[0] = via;
	send_msg(&m);
}

/* One message from `from`: its single fd, or -1. */
static int take(int from)
{
	int got[MAXFDS];
	memset(got, -1, sizeof(got));
	msgs[0] = (struct msg){ "n", 1, { 0 } };
	sk[1] = from;
	return recv_msg(0, got) == 0 ? got[0] : -1;
}

static void setup_nested(void)
{
	int a[2], b[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, a) < 0 || socketpair(AF_UNIX, SOCK_DGRAM, 0, b) < 0)
		wl_die("socketpair");
	pass(a[0], a[1], "n");
	pass(b[0], a[1], "n");
	close(a[1]);
	a0 = a[0];
	b0 = b[0];
	b1 = b[1];
}

static int check_nested(void)
{
	int r = 0, outer = take(b1), inner = outer < 0 ? -1 : take(outer);
	pid_t me = getpid();
	if (outer < 0 || inner < 0)
		r = wl_fail("a[1] is not in b[1]'s queue, or not in its own");
	else if (syscall(SYS_kcmp, me, me, KCMP_FILE, outer, inner) != 0)
		r = wl_fail("the socket in a[1]'s queue is not a[1] itself (kcmp)");
	else if (through(a0, outer, "hi", "a[0] to a[1]"))
		r = -1;
	if (inner >= 0) {
		pass(a0, inner, "n");
		close(inner);
	}
	if (outer >= 0) {
		pass(b0, outer, "n");
		close(outer);
	}
	return r;
}

int main(int argc, char **argv)
{
	if (argc > 1 && chdir(argv[1]) < 0)
		wl_die("chdir");
	static const struct wl_case cases[] = {
		{ "stream", setup_stream, check },	   { "dgram", setup_dgram, check },
		{ "seqpacket", setup_seqpacket, check },   { "epoll", setup_epoll, check_epoll },
		{ "timerfd", setup_timerfd, check_epoll }, { "nested", setup_nested, check_nested },
		{ "tcp", setup_tcp, check_tcp },
	};
	return wl_run_case(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
