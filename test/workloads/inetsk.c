/* TCP and UDP sockets, one case per run (argv[2]); checks on every SIGUSR1
 * ("PASS <case>" or "FAIL <case>: why"), any number of times. Ports are the
 * kernel's choice; the ready line names them (pN=port of fd N).
 *
 *   listen     fd 3: IPv4 listener on 127.0.0.1 (backlog 5, O_NONBLOCK,
 *              SO_REUSEADDR, SO_KEEPALIVE, TCP_NODELAY, TCP_KEEPIDLE 77,
 *              TCP_KEEPCNT 4, SO_RCVBUF, SO_SNDBUF, IP_TOS, SO_BINDTODEVICE lo);
 *              fd 4: IPv6 listener on ::1, IPV6_V6ONLY, SO_REUSEPORT;
 *              fd 5: dual-stack listener on :: (IPV6_V6ONLY off);
 *              fd 6: a TCP socket never bound; fd 7: one bound to 127.0.0.1,
 *              not listening. The check connects to each listener (the
 *              dual-stack one over IPv4 and IPv6), accepts, and sends a byte
 *              each way; it reads every option and address back.
 *   udp        fd 3: UDP on 127.0.0.1 (SO_BROADCAST); fd 4: UDP connected to
 *              it; fd 5: UDP on ::1 (IPV6_RECVPKTINFO); fd 6: UDP connected to
 *              it; fd 7: UDP-Lite on 127.0.0.1 when the kernel has it (else a
 *              second UDP socket; the ready line says lite=0|1); fd 8: UDP
 *              never bound; fd 9: UDP connected to fd 3, shut down for reading.
 *              The check sends through each connected socket and receives it
 *              with its sender's address (and the IPv6 one with its pktinfo).
 *   shared     fd 3: an IPv4 listener a child (child=PID) holds too, as a
 *              server's workers hold their master's; the child accepts one
 *              connection per SIGUSR1 sent to it and answers with "w".
 *   established  fd 3: a listener; fd 4: a connection to it (TCP_NODELAY);
 *              fd 5: its accepted end; data left unread each way. The check
 *              reads both (and sends them again) and talks to the listener.
 *   connecting fd 3 listens on 127.0.0.1 (p3). The first check starts a
 *              non-blocking connect() from fd 4 to it (the test drops the SYNs
 *              first) and waits for SYN_SENT; the second waits for it to
 *              complete, accepts it on fd 3 and sends a byte each way.
 *   raw        fd 3: raw ICMP socket with an ICMP_FILTER passing only echo
 *              replies; fd 4: raw ICMPv6 socket with an ICMPV6_FILTER; fd 5:
 *              IPPROTO_RAW (IP_HDRINCL); fd 6: raw UDP socket bound to
 *              127.0.0.1 and connected to 127.0.0.2, IP_NODEFRAG on; fd 7 (with
 *              ping=1 in argv[3]): a ping socket (ICMP datagrams, echo id = its
 *              port); fd 8: a raw socket of protocol TCP (no TCP socket: it
 *              has no TCP state); fd 9: an IPv6 raw socket of protocol 262
 *              (IPPROTO_MPTCP's number). The check reads each filter and option back and pings
 *              127.0.0.1 through fd 3 (and fd 7), reading the replies.
 *   echo       a server: fd 3 listens on 127.0.0.1 (p3), and every connection
 *              gets back what it sends, upper-cased.
 *   halfclosed three loopback pairs (fd 4-5, 6-7, 8-9, clients first; pN
 *              names each port) and one over IPv6 (fd 10-11), data left unread
 *              each way. Pairs 4-5 and 10-11 are half-closed at once: 4 and 10
 *              FIN_WAIT2, 5 and 11 CLOSE_WAIT. The first check
 *              closes the others while the test drops what goes to port p7
 *              and to port p8 (lost FINs and ACKs): 6 CLOSING, 7 FIN_WAIT1,
 *              8 FIN_WAIT1, 9 LAST_ACK, and waits for each state. The second
 *              check reads every end: its data, then EOF where the peer sent a
 *              FIN (retransmitted after a restore); 5 sends 4 more.
 */
#include "workload.h"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif

/* A socket at a fixed fd number, so the tests can name it. */
static int sock_at(int fd, int family, int type, int proto)
{
	int s = socket(family, type, proto);
	if (s < 0)
		return -1;
	if (s != fd) {
		if (dup2(s, fd) < 0)
			wl_die("dup2");
		close(s);
	}
	return fd;
}

static void bind4(int fd, const char *addr, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, addr, &a.sin_addr);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		wl_die("bind4");
}

static void bind6(int fd, const char *addr, int port)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
	inet_pton(AF_INET6, addr, &a.sin6_addr);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		wl_die("bind6");
}

static int port_of(int fd)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0)
		return -1;
	return ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					     : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* The address getsockname gives, as text. */
static const char *name_of(int fd, char *buf, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0)
		return "?";
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, (socklen_t)n);
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, (socklen_t)n);
	return buf;
}

/* Connects to addr:port, accepts on listener l (waiting for it), sends a byte
 * each way. */
/* fd 3: a TCP listener on 127.0.0.1, a port of the kernel's choice. */
static void listen_at3(void)
{
	if (sock_at(3, AF_INET, SOCK_STREAM, 0) < 0)
		wl_die("socket 3");
	bind4(3, "127.0.0.1", 0);
	if (listen(3, 8) < 0)
		wl_die("listen");
}

static int talk(int l, int family, const char *addr, int port)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		inet_pton(AF_INET, addr, &a->sin_addr);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		inet_pton(AF_INET6, addr, &a->sin6_addr);
		len = sizeof(*a);
	}
	int c = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0)
		return wl_fail("socket: %s", strerror(errno));
	if (connect(c, (struct sockaddr *)&ss, len) < 0) {
		close(c);
		return wl_fail("connect to %s port %d: %s", addr, port, strerror(errno));
	}
	struct pollfd p = { .fd = l, .events = POLLIN };
	if (poll(&p, 1, 5000) != 1) {
		close(c);
		return wl_fail("listener fd %d never had the connection from %s", l, addr);
	}
	int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (a < 0) {
		close(c);
		return wl_fail("accept on fd %d: %s", l, strerror(errno));
	}
	char x = 0;
	int ok = write(c, "c", 1) == 1 && read(a, &x, 1) == 1 && x == 'c' && write(a, "a", 1) == 1 &&
		 read(c, &x, 1) == 1 && x == 'a';
	/* The client closes first, so that TIME_WAIT falls on its port, not the
	 * listener's: a listener without SO_REUSEADDR cannot be bound again over
	 * one (nor by criu, nor by the program itself started again). */
	close(c);
	struct pollfd e = { .fd = a, .events = POLLIN };
	ok = ok && poll(&e, 1, 5000) == 1 && read(a, &x, 1) == 0;
	close(a);
	return ok ? 0 : wl_fail("no byte through the connection to %s port %d", addr, port);
}

/* ---- listen ---- */

static int lport[8];

static void setup_listen(void)
{
	if (sock_at(3, AF_INET, SOCK_STREAM, 0) < 0)
		wl_die("socket 3");
	wl_set_int(3, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
	wl_set_int(3, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
	wl_set_int(3, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
	wl_set_int(3, IPPROTO_TCP, TCP_KEEPIDLE, 77, "TCP_KEEPIDLE");
	wl_set_int(3, IPPROTO_TCP, TCP_KEEPCNT, 4, "TCP_KEEPCNT");
	wl_set_int(3, SOL_SOCKET, SO_RCVBUF, 65536, "SO_RCVBUF");
	wl_set_int(3, SOL_SOCKET, SO_SNDBUF, 32768, "SO_SNDBUF");
	wl_set_int(3, IPPROTO_IP, IP_TOS, 0x10, "IP_TOS");
	if (setsockopt(3, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) < 0)
		wl_die("SO_BINDTODEVICE");
	bind4(3, "127.0.0.1", 0);
	if (listen(3, 5) < 0 || fcntl(3, F_SETFL, O_NONBLOCK) < 0)
		wl_die("listen 3");

	if (sock_at(4, AF_INET6, SOCK_STREAM, 0) < 0)
		wl_die("socket 4");
	wl_set_int(4, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
	wl_set_int(4, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
	bind6(4, "::1", 0);
	if (listen(4, 16) < 0)
		wl_die("listen 4");

	if (sock_at(5, AF_INET6, SOCK_STREAM, 0) < 0)
		wl_die("socket 5");
	wl_set_int(5, IPPROTO_IPV6, IPV6_V6ONLY, 0, "IPV6_V6ONLY");
	bind6(5, "::", 0);
	if (listen(5, 128) < 0)
		wl_die("listen 5");

	if (sock_at(6, AF_INET, SOCK_STREAM, 0) < 0)
		wl_die("socket 6");
	if (sock_at(7, AF_INET, SOCK_STREAM, 0) < 0)
		wl_die("socket 7");
	bind4(7, "127.0.0.1", 0);
	for (int fd = 3; fd <= 7; fd++)
		lport[fd] = port_of(fd);
}

static int check_listen(void)
{
	char buf[64];
	for (int fd = 3; fd <= 7; fd++)
		if (port_of(fd) != lport[fd])
			return wl_fail("fd %d is on port %d, was %d", fd, port_of(fd), lport[fd]);
	if (strcmp(name_of(3, buf, sizeof(buf)), "127.0.0.1"))
		return wl_fail("fd 3 is bound to %s", buf);
	if (strcmp(name_of(4, buf, sizeof(buf)), "::1"))
		return wl_fail("fd 4 is bound to %s", buf);
	if (strcmp(name_of(5, buf, sizeof(buf)), "::"))
		return wl_fail("fd 5 is bound to %s", buf);
	if (strcmp(name_of(7, buf, sizeof(buf)), "127.0.0.1"))
		return wl_fail("fd 7 is bound to %s", buf);
	if (wl_get_int(3, SOL_SOCKET, SO_ACCEPTCONN) != 1 || wl_get_int(4, SOL_SOCKET, SO_ACCEPTCONN) != 1 ||
	    wl_get_int(5, SOL_SOCKET, SO_ACCEPTCONN) != 1 || wl_get_int(6, SOL_SOCKET, SO_ACCEPTCONN) != 0 ||
	    wl_get_int(7, SOL_SOCKET, SO_ACCEPTCONN) != 0)
		return wl_fail("SO_ACCEPTCONN is not 1 1 1 0 0");
	if (!(fcntl(3, F_GETFL) & O_NONBLOCK) || (fcntl(4, F_GETFL) & O_NONBLOCK))
		return wl_fail("O_NONBLOCK: fd 3 %d, fd 4 %d", !!(fcntl(3, F_GETFL) & O_NONBLOCK),
			       !!(fcntl(4, F_GETFL) & O_NONBLOCK));
	if (wl_get_int(3, SOL_SOCKET, SO_REUSEADDR) != 1 || wl_get_int(4, SOL_SOCKET, SO_REUSEADDR) != 0 ||
	    wl_get_int(5, SOL_SOCKET, SO_REUSEADDR) != 0)
		return wl_fail("SO_REUSEADDR: %d %d %d", wl_get_int(3, SOL_SOCKET, SO_REUSEADDR),
			       wl_get_int(4, SOL_SOCKET, SO_REUSEADDR), wl_get_int(5, SOL_SOCKET, SO_REUSEADDR));
	if (wl_get_int(4, SOL_SOCKET, SO_REUSEPORT) != 1 || wl_get_int(3, SOL_SOCKET, SO_REUSEPORT) != 0 ||
	    wl_get_int(5, SOL_SOCKET, SO_REUSEPORT) != 0)
		return wl_fail("SO_REUSEPORT: %d %d %d", wl_get_int(3, SOL_SOCKET, SO_REUSEPORT),
			       wl_get_int(4, SOL_SOCKET, SO_REUSEPORT), wl_get_int(5, SOL_SOCKET, SO_REUSEPORT));
	if (wl_get_int(4, IPPROTO_IPV6, IPV6_V6ONLY) != 1 || wl_get_int(5, IPPROTO_IPV6, IPV6_V6ONLY) != 0)
		return wl_fail("IPV6_V6ONLY: fd 4 %d, fd 5 %d", wl_get_int(4, IPPROTO_IPV6, IPV6_V6ONLY),
			       wl_get_int(5, IPPROTO_IPV6, IPV6_V6ONLY));
	if (wl_get_int(3, SOL_SOCKET, SO_KEEPALIVE) != 1 || wl_get_int(4, SOL_SOCKET, SO_KEEPALIVE) != 0)
		return wl_fail("SO_KEEPALIVE");
	if (wl_get_int(3, IPPROTO_TCP, TCP_NODELAY) != 1 || wl_get_int(4, IPPROTO_TCP, TCP_NODELAY) != 0)
		return wl_fail("TCP_NODELAY");
	if (wl_get_int(3, IPPROTO_TCP, TCP_KEEPIDLE) != 77 || wl_get_int(3, IPPROTO_TCP, TCP_KEEPCNT) != 4)
		return wl_fail("TCP_KEEPIDLE %d, TCP_KEEPCNT %d", wl_get_int(3, IPPROTO_TCP, TCP_KEEPIDLE),
			       wl_get_int(3, IPPROTO_TCP, TCP_KEEPCNT));
	if (wl_get_int(3, SOL_SOCKET, SO_RCVBUF) != 2 * 65536 || wl_get_int(3, SOL_SOCKET, SO_SNDBUF) != 2 * 32768)
		return wl_fail("SO_RCVBUF %d, SO_SNDBUF %d", wl_get_int(3, SOL_SOCKET, SO_RCVBUF),
			       wl_get_int(3, SOL_SOCKET, SO_SNDBUF));
	if (wl_get_int(3, IPPROTO_IP, IP_TOS) != 0x10)
		return wl_fail("IP_TOS %d", wl_get_int(3, IPPROTO_IP, IP_TOS));
	char dev[IFNAMSIZ] = "";
	socklen_t dl = sizeof(dev);
	if (getsockopt(3, SOL_SOCKET, SO_BINDTODEVICE, dev, &dl) < 0 || strcmp(dev, "lo"))
		return wl_fail("SO_BINDTODEVICE is \"%s\"", dev);
	int backlog_ok = wl_get_int(6, IPPROTO_TCP, TCP_NODELAY) == 0;
	if (!backlog_ok)
		return wl_fail("fd 6 has TCP_NODELAY");
	if (talk(3, AF_INET, "127.0.0.1", lport[3]) || talk(4, AF_INET6, "::1", lport[4]) ||
	    talk(5, AF_INET, "127.0.0.1", lport[5]) || talk(5, AF_INET6, "::1", lport[5]))
		return -1;
	return 0;
}

/* ---- udp ---- */

static int uport[10];
static int lite;

static struct sockaddr_storage peer_of(int fd, socklen_t *l)
{
	struct sockaddr_storage ss = { 0 };
	*l = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, l) < 0)
		*l = 0;
	return ss;
}

static void setup_udp(void)
{
	if (sock_at(3, AF_INET, SOCK_DGRAM, 0) < 0)
		wl_die("socket 3");
	wl_set_int(3, SOL_SOCKET, SO_BROADCAST, 1, "SO_BROADCAST");
	bind4(3, "127.0.0.1", 0);
	struct sockaddr_in a3;
	socklen_t l = sizeof(a3);
	getsockname(3, (struct sockaddr *)&a3, &l);
	if (sock_at(4, AF_INET, SOCK_DGRAM, 0) < 0 || connect(4, (struct sockaddr *)&a3, l) < 0)
		wl_die("connect 4");

	if (sock_at(5, AF_INET6, SOCK_DGRAM, 0) < 0)
		wl_die("socket 5");
	wl_set_int(5, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1, "IPV6_RECVPKTINFO");
	bind6(5, "::1", 0);
	struct sockaddr_in6 a5;
	l = sizeof(a5);
	getsockname(5, (struct sockaddr *)&a5, &l);
	if (sock_at(6, AF_INET6, SOCK_DGRAM, 0) < 0 || connect(6, (struct sockaddr *)&a5, l) < 0)
		wl_die("connect 6");

	lite = sock_at(7, AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE) == 7;
	if (!lite && sock_at(7, AF_INET, SOCK_DGRAM, 0) < 0)
		wl_die("socket 7");
	bind4(7, "127.0.0.1", 0);

	if (sock_at(8, AF_INET, SOCK_DGRAM, 0) < 0)
		wl_die("socket 8");
	l = sizeof(a3);
	if (sock_at(9, AF_INET, SOCK_DGRAM, 0) < 0 || connect(9, (struct sockaddr *)&a3, l) < 0 ||
	    shutdown(9, SHUT_RD) < 0)
		wl_die("socket 9");
	for (int fd = 3; fd <= 9; fd++)
		uport[fd] = port_of(fd);
}

/* Sends a datagram through `from` (to its peer, or to `to`'s name), receives it on
 * `to` and checks it came from `from`'s port; with want_pktinfo, that it
 * carries IPV6_PKTINFO. */
static int through(int from, int to, const char *msg, int want_pktinfo)
{
	struct sockaddr_storage dst;
	socklen_t dl = sizeof(dst);
	getsockname(to, (struct sockaddr *)&dst, &dl);
	ssize_t n = from == to ? sendto(from, msg, strlen(msg), 0, (struct sockaddr *)&dst, dl)
			       : send(from, msg, strlen(msg), 0);
	if (n != (ssize_t)strlen(msg))
		return wl_fail("send through fd %d: %s", from, strerror(errno));
	char buf[64], cbuf[256];
	struct sockaddr_storage src;
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_name = &src,
			     .msg_namelen = sizeof(src),
			     .msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct pollfd p = { .fd = to, .events = POLLIN };
	if (poll(&p, 1, 5000) != 1)
		return wl_fail("fd %d never got the datagram of fd %d", to, from);
	n = recvmsg(to, &mh, MSG_DONTWAIT);
	if (n != (ssize_t)strlen(msg) || memcmp(buf, msg, (size_t)n))
		return wl_fail("fd %d got %zd bytes, not \"%s\"", to, n, msg);
	int sport = ntohs(src.ss_family == AF_INET ? ((struct sockaddr_in *)&src)->sin_port
						   : ((struct sockaddr_in6 *)&src)->sin6_port);
	if (sport != uport[from])
		return wl_fail("fd %d's datagram came from port %d, fd %d is on %d", from, sport, from, uport[from]);
	if (want_pktinfo) {
		int seen = 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			seen |= c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO;
		if (!seen)
			return wl_fail("fd %d's datagram has no IPV6_PKTINFO", to);
	}
	return 0;
}

static int check_udp(void)
{
	char buf[64];
	for (int fd = 3; fd <= 9; fd++)
		if (port_of(fd) != uport[fd])
			return wl_fail("fd %d is on port %d, was %d", fd, port_of(fd), uport[fd]);
	if (uport[8] != 0)
		return wl_fail("fd 8 is bound");
	if (strcmp(name_of(5, buf, sizeof(buf)), "::1"))
		return wl_fail("fd 5 is bound to %s", buf);
	socklen_t l;
	struct sockaddr_storage p4 = peer_of(4, &l);
	if (l == 0 || ntohs(((struct sockaddr_in *)&p4)->sin_port) != uport[3])
		return wl_fail("fd 4 is not connected to fd 3");
	peer_of(3, &l);
	if (l != 0)
		return wl_fail("fd 3 is connected");
	if (wl_get_int(7, SOL_SOCKET, SO_PROTOCOL) != (lite ? IPPROTO_UDPLITE : IPPROTO_UDP))
		return wl_fail("fd 7 has protocol %d", wl_get_int(7, SOL_SOCKET, SO_PROTOCOL));
	if (wl_get_int(3, SOL_SOCKET, SO_BROADCAST) != 1 || wl_get_int(4, SOL_SOCKET, SO_BROADCAST) != 0)
		return wl_fail("SO_BROADCAST");
	if (wl_get_int(5, IPPROTO_IPV6, IPV6_RECVPKTINFO) != 1)
		return wl_fail("IPV6_RECVPKTINFO");
	/* Shut down for reading: poll says so at once. */
	struct pollfd p9 = { .fd = 9, .events = POLLRDHUP };
	if (poll(&p9, 1, 0) != 1 || !(p9.revents & POLLRDHUP))
		return wl_fail("fd 9 is not shut down for reading");
	if (through(4, 3, "four", 0) || through(6, 5, "six", 1) || through(7, 7, "lite", 0) || through(9, 3, "nine", 0))
		return -1;
	return 0;
}

/* ---- shared ---- */

static pid_t child;

static void setup_shared(void)
{
	listen_at3();
	lport[3] = port_of(3);
	wl_install_check_handler();
	child = fork();
	if (child < 0)
		wl_die("fork");
	if (child == 0) {
		/* it goes with its parent: a test that kills the root leaves nothing behind */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(0);
		/* The worker: one accept per SIGUSR1, answered with "w". */
		for (;;) {
			wl_wait_check();
			int a = accept4(3, NULL, NULL, SOCK_CLOEXEC);
			if (a >= 0) {
				char x;
				struct pollfd e = { .fd = a, .events = POLLIN };
				/* the client closes first (see talk) */
				if (write(a, "w", 1) == 1 && poll(&e, 1, 5000) == 1 && read(a, &x, 1) < 0) {
					/* the client went away */
				}
				close(a);
			}
		}
	}
}

static int check_shared(void)
{
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(lport[3]) };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(c);
		return wl_fail("connect: %s", strerror(errno));
	}
	/* The worker accepts it. */
	kill(child, SIGUSR1);
	char x = 0;
	struct pollfd p = { .fd = c, .events = POLLIN };
	int ok = poll(&p, 1, 5000) == 1 && read(c, &x, 1) == 1 && x == 'w';
	close(c);
	if (!ok)
		return wl_fail("the worker (pid %d) did not answer on the shared listener", (int)child);
	return talk(3, AF_INET, "127.0.0.1", lport[3]);
}

/* ---- established ---- */

static const char c2s[] = "client to server, unread|";
static const char s2c[] = "server to client, unread|";

static void setup_established(void)
{
	listen_at3();
	struct sockaddr_in a;
	socklen_t l = sizeof(a);
	getsockname(3, (struct sockaddr *)&a, &l);
	if (sock_at(4, AF_INET, SOCK_STREAM, 0) < 0 || connect(4, (struct sockaddr *)&a, l) < 0)
		wl_die("connect");
	int s = accept4(3, NULL, NULL, 0);
	if (s < 0 || dup2(s, 5) < 0)
		wl_die("accept");
	if (s != 5)
		close(s);
	wl_set_int(4, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
	/* Data left unread each way: it must be in the queues after a restore. */
	if (write(4, c2s, strlen(c2s)) != (ssize_t)strlen(c2s) || write(5, s2c, strlen(s2c)) != (ssize_t)strlen(s2c))
		wl_die("write");
	lport[3] = port_of(3);
	lport[4] = port_of(4);
}

/* Reads exactly what `want` is from fd (waiting for it), then queues it again for the next check. */
static int expect(int rd, int wr, const char *want)
{
	char buf[128];
	size_t n = strlen(want), got = 0;
	while (got < n) {
		struct pollfd p = { .fd = rd, .events = POLLIN };
		if (poll(&p, 1, 5000) != 1)
			return wl_fail("fd %d: %zu of %zu bytes came", rd, got, n);
		ssize_t r = read(rd, buf + got, n - got);
		if (r <= 0)
			return wl_fail("fd %d: read gave %zd (%s)", rd, r, r < 0 ? strerror(errno) : "EOF");
		got += (size_t)r;
	}
	if (memcmp(buf, want, n))
		return wl_fail("fd %d read \"%.*s\", not \"%s\"", rd, (int)n, buf, want);
	if (write(wr, want, n) != (ssize_t)n)
		return wl_fail("write to fd %d: %s", wr, strerror(errno));
	return 0;
}

static int check_established(void)
{
	if (port_of(4) != lport[4])
		return wl_fail("fd 4 is on port %d, was %d", port_of(4), lport[4]);
	if (wl_get_int(4, IPPROTO_TCP, TCP_NODELAY) != 1)
		return wl_fail("fd 4 lost TCP_NODELAY");
	if (expect(5, 4, c2s) || expect(4, 5, s2c))
		return -1;
	return talk(3, AF_INET, "127.0.0.1", lport[3]);
}

/* ---- halfclosed ---- */

static const char *hc_data[12] = {
	[4] = "A c2s|", [5] = "A s2c|", [6] = "B c2s|",	 [7] = "B s2c|",
	[8] = "C c2s|", [9] = "C s2c|", [10] = "D c2s|", [11] = "D s2c|",
};
static int hc_port[12];
static int hc_phase;

/* Waits up to 10 s for fd to reach TCP state `want`. */
static int await_state(int fd, int want)
{
	for (int i = 0; i < 1000; i++) {
		if (wl_tcp_state(fd) == want)
			return 0;
		usleep(10000);
	}
	return wl_fail("fd %d is in TCP state %d, not %d", fd, wl_tcp_state(fd), want);
}

/* A connected pair at fds c (client) and s (accepted), data written each way. */
static void hc_pair(int l, int family, int c, int s)
{
	struct sockaddr_storage a;
	socklen_t al = sizeof(a);
	getsockname(l, (struct sockaddr *)&a, &al);
	if (sock_at(c, family, SOCK_STREAM, 0) < 0 || connect(c, (struct sockaddr *)&a, al) < 0)
		wl_die("connect");
	int x = accept4(l, NULL, NULL, 0);
	if (x < 0 || dup2(x, s) < 0)
		wl_die("accept");
	if (x != s)
		close(x);
	hc_port[c] = port_of(c);
	hc_port[s] = port_of(s);
}

static void hc_send(int fd)
{
	if (write(fd, hc_data[fd], strlen(hc_data[fd])) != (ssize_t)strlen(hc_data[fd]))
		wl_die("write");
}

static void setup_halfclosed(void)
{
	listen_at3();
	hc_pair(3, AF_INET, 4, 5);
	hc_pair(3, AF_INET, 6, 7);
	hc_pair(3, AF_INET, 8, 9);
	close(3);
	if (sock_at(3, AF_INET6, SOCK_STREAM, 0) < 0)
		wl_die("socket 3");
	bind6(3, "::1", 0);
	if (listen(3, 8) < 0)
		wl_die("listen");
	hc_pair(3, AF_INET6, 10, 11);
	close(3);
	for (int c = 4; c <= 10; c += 6) {
		hc_send(c);
		hc_send(c + 1);
		shutdown(c, SHUT_WR);
		if (await_state(c, TCP_FIN_WAIT2) || await_state(c + 1, TCP_CLOSE_WAIT))
			wl_die(wl_failure);
	}
}

/* What the kernel says of fd's connection, for a failure's message: its state, what it
 * has queued each way and its retransmission state (a check that waited in vain says
 * which end held the data back). */
static const char *hc_tcp(int fd, char *buf, size_t n)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);
	int inq = -1, outq = -1;
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0) {
		snprintf(buf, n, "fd %d: no TCP_INFO", fd);
		return buf;
	}
	ioctl(fd, SIOCINQ, &inq);
	ioctl(fd, SIOCOUTQ, &outq);
	snprintf(buf, n,
		 "fd %d: state %u, inq %d, outq %d, unacked %u, retransmits %u, probes %u, backoff %u, rto %u us", fd,
		 ti.tcpi_state, inq, outq, ti.tcpi_unacked, ti.tcpi_retransmits, ti.tcpi_probes, ti.tcpi_backoff,
		 ti.tcpi_rto);
	return buf;
}

/* Reads fd's peer's data, then EOF when `eof`. */
static int hc_read(int fd, const char *want, int eof)
{
	char buf[64];
	size_t n = strlen(want), got = 0;
	for (;;) {
		/* what was lost before the dump comes with the next retransmission */
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 30000) != 1) {
			char self[200], peer[200];
			/* the pairs are 4-5, 6-7, 8-9, 10-11 */
			return wl_fail("fd %d: %zu of %zu bytes came%s (%s; %s)", fd, got, n,
				       got == n ? ", then no EOF" : "", hc_tcp(fd, self, sizeof(self)),
				       hc_tcp(fd ^ 1, peer, sizeof(peer)));
		}
		ssize_t r = read(fd, buf + got, sizeof(buf) - got);
		if (r < 0)
			return wl_fail("fd %d: read: %s", fd, strerror(errno));
		if (r == 0) {
			if (got == n && eof)
				break;
			return wl_fail("fd %d: EOF after %zu of %zu bytes", fd, got, n);
		}
		got += (size_t)r;
		if (got > n || memcmp(buf, want, got))
			return wl_fail("fd %d read \"%.*s\", not \"%s\"", fd, (int)got, buf, want);
		if (got == n && !eof)
			break;
	}
	return 0;
}

static int check_halfclosed(void)
{
	for (int fd = 4; fd <= 11; fd++)
		if (port_of(fd) != hc_port[fd])
			return wl_fail("fd %d is on port %d, was %d", fd, port_of(fd), hc_port[fd]);
	if (hc_phase++ == 0) {
		hc_send(6);
		shutdown(6, SHUT_WR);
		hc_send(7);
		shutdown(7, SHUT_WR);
		hc_send(8);
		shutdown(8, SHUT_WR);
		if (await_state(9, TCP_CLOSE_WAIT))
			return -1;
		hc_send(9);
		shutdown(9, SHUT_WR);
		if (await_state(4, TCP_FIN_WAIT2) || await_state(5, TCP_CLOSE_WAIT) || await_state(10, TCP_FIN_WAIT2) ||
		    await_state(11, TCP_CLOSE_WAIT) || await_state(6, TCP_CLOSING) || await_state(7, TCP_FIN_WAIT1) ||
		    await_state(8, TCP_FIN_WAIT1) || await_state(9, TCP_LAST_ACK))
			return -1;
		return 0;
	}
	if (hc_phase > 2)
		return wl_fail("asked a third time: every end was read to its end already");
	for (int c = 4; c <= 10; c += 6) {
		if (hc_read(c, hc_data[c + 1], 0) || hc_read(c + 1, hc_data[c], 1))
			return -1;
		if (write(c + 1, "more|", 5) != 5)
			return wl_fail("fd %d (CLOSE_WAIT) cannot send: %s", c + 1, strerror(errno));
		if (hc_read(c, "more|", 0))
			return -1;
	}
	for (int fd = 6; fd <= 9; fd++)
		if (hc_read(fd, hc_data[fd & 1 ? fd - 1 : fd + 1], 1))
			return -1;
	return 0;
}

/* ---- connecting ---- */

static int cn_phase;

static int check_connecting(void)
{
	if (port_of(3) != lport[3])
		return wl_fail("fd 3 is on port %d, was %d", port_of(3), lport[3]);
	if (cn_phase++ == 0) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)lport[3]) };
		inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
		if (connect(4, (struct sockaddr *)&a, sizeof(a)) == 0 || errno != EINPROGRESS)
			return wl_fail("connect did not stay in progress: %s", strerror(errno));
		lport[4] = port_of(4);
		return await_state(4, TCP_SYN_SENT);
	}
	if (port_of(4) != lport[4])
		return wl_fail("fd 4 is on port %d, was %d", port_of(4), lport[4]);
	/* the SYN dropped before the dump goes again after the restore */
	struct pollfd p = { .fd = 4, .events = POLLOUT };
	if (poll(&p, 1, 30000) != 1)
		return wl_fail("the connect did not complete (TCP state %d)", wl_tcp_state(4));
	int err = wl_get_int(4, SOL_SOCKET, SO_ERROR);
	if (err)
		return wl_fail("the connect failed: %s", strerror(err));
	struct pollfd l = { .fd = 3, .events = POLLIN };
	if (poll(&l, 1, 5000) != 1)
		return wl_fail("fd 3 has no connection to accept");
	int c = accept4(3, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return wl_fail("accept: %s", strerror(errno));
	char x = 0;
	struct pollfd r = { .fd = 4, .events = POLLIN };
	int ok = write(c, "s", 1) == 1 && poll(&r, 1, 5000) == 1 && read(4, &x, 1) == 1 && x == 's';
	if (ok) {
		struct pollfd q = { .fd = c, .events = POLLIN };
		ok = write(4, "c", 1) == 1 && poll(&q, 1, 5000) == 1 && read(c, &x, 1) == 1 && x == 'c';
	}
	close(c);
	return ok ? 0 : wl_fail("no byte each way over the completed connection");
}

/* ---- raw ---- */

#include <linux/icmp.h>
#include <linux/icmpv6.h>

static int with_ping;
static unsigned icmp6_filter_words[8];

static uint16_t csum(const void *p, size_t n)
{
	const uint16_t *w = p;
	uint32_t s = 0;
	for (; n > 1; n -= 2)
		s += *w++;
	if (n)
		s += *(const uint8_t *)w;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void setup_raw(void)
{
	if (sock_at(3, AF_INET, SOCK_RAW, IPPROTO_ICMP) < 0)
		wl_die("raw icmp");
	struct icmp_filter f = { .data = ~(1u << ICMP_ECHOREPLY) };
	if (setsockopt(3, SOL_RAW, ICMP_FILTER, &f, sizeof(f)) < 0)
		wl_die("ICMP_FILTER");
	if (sock_at(4, AF_INET6, SOCK_RAW, IPPROTO_ICMPV6) < 0)
		wl_die("raw icmpv6");
	for (int i = 0; i < 8; i++)
		icmp6_filter_words[i] = 0x01020304u * (unsigned)(i + 1);
	if (setsockopt(4, SOL_ICMPV6, ICMPV6_FILTER, icmp6_filter_words, sizeof(icmp6_filter_words)) < 0)
		wl_die("ICMPV6_FILTER");
	if (sock_at(5, AF_INET, SOCK_RAW, IPPROTO_RAW) < 0)
		wl_die("IPPROTO_RAW");
	if (sock_at(6, AF_INET, SOCK_RAW, IPPROTO_UDP) < 0)
		wl_die("raw udp");
	bind4(6, "127.0.0.1", 0);
	struct sockaddr_in to = { .sin_family = AF_INET };
	inet_pton(AF_INET, "127.0.0.2", &to.sin_addr);
	if (connect(6, (struct sockaddr *)&to, sizeof(to)) < 0)
		wl_die("connect raw");
	wl_set_int(6, SOL_IP, IP_NODEFRAG, 1, "IP_NODEFRAG");
	/* A raw socket of protocol TCP: no TCP socket (it has no TCP state to read). */
	if (sock_at(8, AF_INET, SOCK_RAW, IPPROTO_TCP) < 0)
		wl_die("raw tcp");
	/* and one of MPTCP's protocol number, past 255 (a raw socket takes any below IPPROTO_MAX) */
	if (sock_at(9, AF_INET6, SOCK_RAW, IPPROTO_MPTCP) < 0)
		wl_die("raw mptcp");
	if (with_ping) {
		if (sock_at(7, AF_INET, SOCK_DGRAM, IPPROTO_ICMP) < 0)
			wl_die("ping socket");
		bind4(7, "127.0.0.1", 4242);
	}
}

/* An echo request to 127.0.0.1 through fd (raw: with its header; ping: the kernel's), and its reply read back. */
static int ping(int fd, int rawsk)
{
	struct icmphdr h = { .type = ICMP_ECHO, .un.echo = { .id = htons(4242), .sequence = htons(7) } };
	h.checksum = csum(&h, sizeof(h));
	struct sockaddr_in to = { .sin_family = AF_INET };
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	if (sendto(fd, &h, sizeof(h), 0, (struct sockaddr *)&to, sizeof(to)) != sizeof(h))
		return wl_fail("fd %d: sendto: %s", fd, strerror(errno));
	for (int i = 0; i < 20; i++) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 5000) != 1)
			return wl_fail("fd %d: no echo reply", fd);
		unsigned char buf[256];
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		size_t off = rawsk ? (size_t)(buf[0] & 0xf) * 4 : 0;
		if (n < (ssize_t)(off + sizeof(h)))
			continue;
		struct icmphdr *r = (struct icmphdr *)(buf + off);
		if (r->type == ICMP_ECHOREPLY && r->un.echo.sequence == htons(7))
			return 0;
		if (rawsk && r->type != ICMP_ECHOREPLY)
			return wl_fail("fd %d got ICMP type %d past its filter", fd, r->type);
	}
	return wl_fail("fd %d: no echo reply among 20 packets", fd);
}

static int check_raw(void)
{
	struct icmp_filter f;
	socklen_t l = sizeof(f);
	if (getsockopt(3, SOL_RAW, ICMP_FILTER, &f, &l) < 0 || f.data != ~(1u << ICMP_ECHOREPLY))
		return wl_fail("fd 3's ICMP_FILTER is %08x", f.data);
	unsigned w[8];
	l = sizeof(w);
	if (getsockopt(4, SOL_ICMPV6, ICMPV6_FILTER, w, &l) < 0 || memcmp(w, icmp6_filter_words, sizeof(w)))
		return wl_fail("fd 4's ICMPV6_FILTER differs");
	if (wl_get_int(5, SOL_IP, IP_HDRINCL) != 1)
		return wl_fail("fd 5 lost IP_HDRINCL");
	if (wl_get_int(5, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_RAW ||
	    wl_get_int(6, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_UDP ||
	    wl_get_int(8, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_TCP || wl_get_int(8, SOL_SOCKET, SO_TYPE) != SOCK_RAW ||
	    wl_get_int(9, SOL_SOCKET, SO_PROTOCOL) != IPPROTO_MPTCP || wl_get_int(9, SOL_SOCKET, SO_DOMAIN) != AF_INET6)
		return wl_fail("a raw socket's protocol changed");
	if (wl_get_int(6, SOL_IP, IP_NODEFRAG) != 1)
		return wl_fail("fd 6 lost IP_NODEFRAG");
	struct sockaddr_in a;
	socklen_t al = sizeof(a);
	char s[32];
	if (getsockname(6, (struct sockaddr *)&a, &al) < 0 ||
	    strcmp(inet_ntop(AF_INET, &a.sin_addr, s, sizeof(s)), "127.0.0.1"))
		return wl_fail("fd 6 is bound to %s", s);
	/* A raw socket has no peer name to tell: only a connected one sends without an address. */
	char b8[8] = { 0 };
	if (send(6, b8, sizeof(b8), 0) != sizeof(b8))
		return wl_fail("fd 6 cannot send without an address (not connected): %s", strerror(errno));
	if (ping(3, 1))
		return -1;
	if (with_ping) {
		al = sizeof(a);
		if (getsockname(7, (struct sockaddr *)&a, &al) < 0 || ntohs(a.sin_port) != 4242)
			return wl_fail("fd 7 (ping) has the echo id %d", ntohs(a.sin_port));
		if (ping(7, 0))
			return -1;
	}
	return 0;
}

/* ---- echo ---- */

/* A server: fd 3 listens on 127.0.0.1; every connection gets back each line it
 * sends, upper-cased. Checks (SIGUSR1) only say it runs. */
static void run_echo(void)
{
	if (sock_at(3, AF_INET, SOCK_STREAM, 0) < 0)
		wl_die("socket 3");
	wl_set_int(3, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
	bind4(3, "127.0.0.1", 0);
	if (listen(3, 64) < 0)
		wl_die("listen");
	wl_install_check_handler();
	wl_ready("case=echo p3=%d", port_of(3));
	struct pollfd p[1100];
	int n = 1;
	p[0] = (struct pollfd){ .fd = 3, .events = POLLIN };
	for (;;) {
		if (wl_check_requested) {
			wl_check_requested = 0;
			wl_result("PASS echo");
		}
		if (poll(p, (nfds_t)n, 100) <= 0)
			continue;
		if (p[0].revents & POLLIN) {
			int c = accept4(3, NULL, NULL, SOCK_CLOEXEC);
			if (c >= 0 && n < 1100)
				p[n++] = (struct pollfd){ .fd = c, .events = POLLIN };
			else if (c >= 0)
				close(c);
		}
		for (int i = 1; i < n; i++) {
			if (!p[i].revents)
				continue;
			char buf[4096];
			ssize_t r = read(p[i].fd, buf, sizeof(buf));
			if (r <= 0) {
				close(p[i].fd);
				p[i--] = p[--n];
				continue;
			}
			for (ssize_t k = 0; k < r; k++)
				if (buf[k] >= 'a' && buf[k] <= 'z')
					buf[k] = (char)(buf[k] - 'a' + 'A');
			if (write(p[i].fd, buf, (size_t)r) != r) {
				/* the client went away */
			}
		}
	}
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	if (argc < 3) {
		fprintf(stderr, "usage: %s STATE_DIR CASE\n", argv[0]);
		return 2;
	}
	const char *name = argv[2];
	int (*check)(void) = NULL;
	char info[256] = "";
	if (!strcmp(name, "listen")) {
		setup_listen();
		check = check_listen;
		snprintf(info, sizeof(info), "p3=%d p4=%d p5=%d p7=%d", lport[3], lport[4], lport[5], lport[7]);
	} else if (!strcmp(name, "udp")) {
		setup_udp();
		check = check_udp;
		snprintf(info, sizeof(info), "p3=%d p5=%d p7=%d lite=%d", uport[3], uport[5], uport[7], lite);
	} else if (!strcmp(name, "shared")) {
		setup_shared();
		check = check_shared;
		snprintf(info, sizeof(info), "p3=%d child=%d", lport[3], (int)child);
	} else if (!strcmp(name, "established")) {
		setup_established();
		check = check_established;
	} else if (!strcmp(name, "halfclosed")) {
		setup_halfclosed();
		check = check_halfclosed;
		snprintf(info, sizeof(info), "p4=%d p5=%d p6=%d p7=%d p8=%d p9=%d p10=%d p11=%d", hc_port[4],
			 hc_port[5], hc_port[6], hc_port[7], hc_port[8], hc_port[9], hc_port[10], hc_port[11]);
	} else if (!strcmp(name, "raw")) {
		with_ping = argc > 3 && !strcmp(argv[3], "ping=1");
		setup_raw();
		check = check_raw;
		snprintf(info, sizeof(info), "ping=%d", with_ping);
	} else if (!strcmp(name, "connecting")) {
		if (sock_at(3, AF_INET, SOCK_STREAM, 0) < 0)
			wl_die("socket 3");
		bind4(3, "127.0.0.1", 0);
		if (listen(3, 8) < 0)
			wl_die("listen");
		lport[3] = port_of(3);
		/* made now: fds made after the check handler could take the number of its pipe */
		if (sock_at(4, AF_INET, SOCK_STREAM, 0) < 0)
			wl_die("socket 4");
		fcntl(4, F_SETFL, O_NONBLOCK);
		check = check_connecting;
		snprintf(info, sizeof(info), "p3=%d", lport[3]);
	} else if (!strcmp(name, "echo")) {
		signal(SIGPIPE, SIG_IGN);
		run_echo();
	} else {
		fprintf(stderr, "unknown case %s\n", name);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	wl_install_check_handler();
	wl_ready("case=%s %s", name, info);
	wl_serve_checks(name, check);
}
