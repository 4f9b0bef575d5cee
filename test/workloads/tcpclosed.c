/* TCP connections restored closed (criu's --tcp-close), one case per run (argv[2]);
 * checks on every SIGUSR1 ("PASS <case>" or "FAIL <case>: why").
 *
 *   open    fd 3: a listener on 127.0.0.1 (p3, SO_REUSEADDR); fd 4: a connection to it, fd 5: its
 *           accepted end, both established. The check wants 4 and 5 closed (TCP
 *           state CLOSE, recv: EOF, poll: POLLHUP, send: EPIPE), as a restore with
 *           --tcp-close leaves them: before the dump it fails. Then the listener
 *           serves a new connection.
 *   closed  the same, and fd 6 (client, p6) and fd 7 (its accepted end): each shut
 *           down for writing, the client first, both FINs acknowledged: both are in
 *           CLOSE before the dump, and fd 6's port is held by the kernel's TIME_WAIT
 *           socket, which a socket made again must not be bound over.
 */
#include "workload.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

static int nfds = 6;
static int port3, port6;

static int port_of(int fd)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);
	if (getsockname(fd, (struct sockaddr *)&a, &l) < 0)
		return -1;
	return ntohs(a.sin_port);
}

/* A connection to listener fd 3 at fd c, its accepted end at fd s. */
static void pair_at(int c, int s)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);
	getsockname(3, (struct sockaddr *)&a, &l);
	wl_fd_at(c, socket(AF_INET, SOCK_STREAM, 0), "socket");
	if (connect(c, (struct sockaddr *)&a, l) < 0)
		wl_die("connect");
	wl_fd_at(s, accept4(3, NULL, NULL, 0), "accept");
}

static void setup_listener(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	wl_fd_at(3, socket(AF_INET, SOCK_STREAM, 0), "socket 3");
	/* A dump with --tcp-close leaves the connections as they are: when the task is
	 * killed, they close and one end on the listener's port may linger in TIME_WAIT.
	 * The listener is bound again over it only with SO_REUSEADDR, which its accepted
	 * ends (and their TIME_WAIT) take from it, as servers have it on (zdtm's too). */
	wl_set_int(3, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
	if (bind(3, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(3, 8) < 0)
		wl_die("listen");
	port3 = port_of(3);
	pair_at(4, 5);
}

static void setup_open(void)
{
	signal(SIGPIPE, SIG_IGN);
	setup_listener();
}

static void setup_closed(void)
{
	setup_open();
	pair_at(6, 7);
	port6 = port_of(6);
	nfds = 8;
	if (shutdown(6, SHUT_WR) < 0)
		wl_die("shutdown 6");
	/* fd 7 sends its FIN once it has fd 6's: fd 6 then goes to TIME_WAIT (the kernel's
	 * copy; the socket itself to CLOSE), fd 7 to CLOSE once its FIN is acknowledged. */
	char x;
	struct pollfd p = { .fd = 7, .events = POLLIN };
	if (poll(&p, 1, 10000) != 1 || read(7, &x, 1) != 0)
		wl_die("fd 7 never had fd 6's FIN");
	if (shutdown(7, SHUT_WR) < 0)
		wl_die("shutdown 7");
	for (int i = 0; i < 1000 && (wl_tcp_state(6) != TCP_CLOSE || wl_tcp_state(7) != TCP_CLOSE); i++)
		usleep(10000);
	if (wl_tcp_state(6) != TCP_CLOSE || wl_tcp_state(7) != TCP_CLOSE)
		wl_die("fds 6 and 7 never both reached CLOSE");
}

/* What a closed connection's end answers: state CLOSE, EOF, POLLHUP, EPIPE. */
static int closed_end(int fd)
{
	int st = wl_tcp_state(fd);
	if (st != TCP_CLOSE)
		return wl_fail("fd %d is in TCP state %d, not CLOSE (%d)", fd, st, TCP_CLOSE);
	char buf[4];
	ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (r != 0)
		return wl_fail("fd %d: recv gave %zd (%s), not EOF", fd, r, r < 0 ? strerror(errno) : "data");
	struct pollfd p = { .fd = fd, .events = POLLHUP };
	if (poll(&p, 1, 0) != 1 || p.revents != POLLHUP)
		return wl_fail("fd %d: poll gave revents %#x, not POLLHUP alone", fd, p.revents);
	r = send(fd, "x", 1, MSG_DONTWAIT);
	if (r != -1 || errno != EPIPE)
		return wl_fail("fd %d: send gave %zd (%s), not EPIPE", fd, r, r < 0 ? strerror(errno) : "sent");
	return 0;
}

/* The listener still serves: a new connection, a byte each way. */
static int serves(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons(port3),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (c >= 0)
			close(c);
		return wl_fail("connect to port %d: %s", port3, strerror(errno));
	}
	int s = accept4(3, NULL, NULL, SOCK_CLOEXEC);
	char x = 0;
	int ok = s >= 0 && write(c, "c", 1) == 1 && read(s, &x, 1) == 1 && x == 'c' && write(s, "s", 1) == 1 &&
		 read(c, &x, 1) == 1 && x == 's';
	close(c);
	if (s >= 0)
		close(s);
	return ok ? 0 : wl_fail("no byte each way through a new connection to port %d", port3);
}

static int check(void)
{
	for (int fd = 4; fd < nfds; fd++)
		if (closed_end(fd))
			return -1;
	return serves();
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	if (argc < 3 || (strcmp(argv[2], "open") && strcmp(argv[2], "closed"))) {
		fprintf(stderr, "usage: %s STATE_DIR open|closed\n", argv[0]);
		return 2;
	}
	if (!strcmp(argv[2], "open"))
		setup_open();
	else
		setup_closed();
	wl_install_check_handler();
	wl_ready("case=%s p3=%d p6=%d", argv[2], port3, port6);
	wl_serve_checks(argv[2], check);
}
