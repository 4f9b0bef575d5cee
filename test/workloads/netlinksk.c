/* Netlink sockets; checks on every SIGUSR1 ("PASS netlinksk" or "FAIL …").
 *
 *   fd 3  NETLINK_ROUTE, autobound (the kernel's port id), in groups 1
 *         (RTMGRP_LINK, by bind) and 33 (NETLINK_ADD_MEMBERSHIP; left out
 *         with argv[2] = "upto32", for criu, which keeps 32 groups at most);
 *         the check dumps the links (RTM_GETLINK) through it.
 *   fd 4  NETLINK_ROUTE bound to the port id PORT (pid | 0x40000000).
 *   fd 5  NETLINK_KOBJECT_UEVENT, never bound.
 *   fd 6  NETLINK_ROUTE, O_NONBLOCK, SO_RCVBUF 65536, SO_PASSCRED.
 *   fd 7, 8  NETLINK_USERSOCK bound to PORT+1 and PORT+2; 8 connected to 7:
 *         the check sends from 8 without an address and reads it on 7,
 *         from PORT+2.
 * With argv[2] = "extack", fd 9 is a NETLINK_ROUTE socket with
 * NETLINK_EXT_ACK on (which the dump refuses); with "queued", fd 7 has a
 * message waiting (refused too). */
#include "workload.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_LIST_MEMBERSHIPS
#define NETLINK_LIST_MEMBERSHIPS 9
#endif
#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

static unsigned port;
static int upto32;

static int nl_at(int fd, int proto)
{
	return wl_fd_at(fd, socket(AF_NETLINK, SOCK_RAW, proto), "socket(AF_NETLINK)");
}

static void bind_nl(int fd, unsigned pid, unsigned groups)
{
	struct sockaddr_nl a = { .nl_family = AF_NETLINK, .nl_pid = pid, .nl_groups = groups };
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		wl_die("bind(AF_NETLINK)");
}

static unsigned port_of(int fd)
{
	struct sockaddr_nl a;
	socklen_t l = sizeof(a);
	if (getsockname(fd, (struct sockaddr *)&a, &l) < 0)
		return 0;
	return a.nl_pid;
}

static unsigned autoport;

static void setup(const char *mode)
{
	port = (unsigned)getpid() | 0x40000000u;
	upto32 = !strcmp(mode, "upto32");
	nl_at(3, NETLINK_ROUTE);
	bind_nl(3, 0, RTMGRP_LINK);
	if (!upto32) {
		int g = 33;
		if (setsockopt(3, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof(g)) < 0)
			wl_die("NETLINK_ADD_MEMBERSHIP");
	}
	autoport = port_of(3);
	nl_at(4, NETLINK_ROUTE);
	bind_nl(4, port, 0);
	nl_at(5, NETLINK_KOBJECT_UEVENT);
	nl_at(6, NETLINK_ROUTE);
	fcntl(6, F_SETFL, O_NONBLOCK);
	int v = 65536;
	setsockopt(6, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	v = 1;
	setsockopt(6, SOL_SOCKET, SO_PASSCRED, &v, sizeof(v));
	nl_at(7, NETLINK_USERSOCK);
	bind_nl(7, port + 1, 0);
	nl_at(8, NETLINK_USERSOCK);
	bind_nl(8, port + 2, 0);
	struct sockaddr_nl to = { .nl_family = AF_NETLINK, .nl_pid = port + 1 };
	if (connect(8, (struct sockaddr *)&to, sizeof(to)) < 0)
		wl_die("connect(AF_NETLINK)");
	if (!strcmp(mode, "extack")) {
		nl_at(9, NETLINK_ROUTE);
		v = 1;
		if (setsockopt(9, SOL_NETLINK, NETLINK_EXT_ACK, &v, sizeof(v)) < 0)
			wl_die("NETLINK_EXT_ACK");
	}
	if (!strcmp(mode, "queued")) {
		struct nlmsghdr h = { .nlmsg_len = sizeof(h), .nlmsg_type = NLMSG_NOOP };
		if (send(8, &h, sizeof(h), 0) != sizeof(h))
			wl_die("send(queued)");
	}
}

/* RTM_GETLINK dump through fd 3: at least one link, then NLMSG_DONE. */
static int dump_links(void)
{
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
	} req = { .h = { .nlmsg_len = sizeof(req),
			 .nlmsg_type = RTM_GETLINK,
			 .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
			 .nlmsg_seq = 7 },
		  .i = { .ifi_family = AF_UNSPEC } };
	struct sockaddr_nl k = { .nl_family = AF_NETLINK };
	if (sendto(3, &req, sizeof(req), 0, (struct sockaddr *)&k, sizeof(k)) != sizeof(req))
		return wl_fail("RTM_GETLINK: %s", strerror(errno));
	int links = 0;
	static char buf[1 << 16];
	for (;;) {
		ssize_t n = recv(3, buf, sizeof(buf), 0);
		if (n < 0)
			return wl_fail("recv of the link dump: %s", strerror(errno));
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != 7)
				continue; /* a group message (a link changed): not ours */
			if (h->nlmsg_type == NLMSG_DONE)
				return links > 0 ? 0 : wl_fail("the link dump listed no link");
			if (h->nlmsg_type == NLMSG_ERROR)
				return wl_fail("the link dump failed");
			if (h->nlmsg_type == RTM_NEWLINK)
				links++;
		}
	}
}

static int check(void)
{
	if (port_of(3) != autoport)
		return wl_fail("fd 3 has port %u, was %u", port_of(3), autoport);
	if (port_of(4) != port)
		return wl_fail("fd 4 has port %u, was %u", port_of(4), port);
	unsigned groups[4] = { 0 };
	socklen_t l = sizeof(groups);
	if (getsockopt(3, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, groups, &l) < 0)
		return wl_fail("NETLINK_LIST_MEMBERSHIPS: %s", strerror(errno));
	if (groups[0] != RTMGRP_LINK || groups[1] != (upto32 ? 0u : 1u))
		return wl_fail("fd 3 is in groups %08x %08x", groups[0], groups[1]);
	int v;
	l = sizeof(v);
	if (getsockopt(5, SOL_SOCKET, SO_PROTOCOL, &v, &l) < 0 || v != NETLINK_KOBJECT_UEVENT)
		return wl_fail("fd 5 has protocol %d", v);
	if (port_of(5) != 0)
		return wl_fail("fd 5 is bound (port %u)", port_of(5));
	if (!(fcntl(6, F_GETFL) & O_NONBLOCK))
		return wl_fail("fd 6 lost O_NONBLOCK");
	l = sizeof(v);
	getsockopt(6, SOL_SOCKET, SO_RCVBUF, &v, &l);
	if (v != 2 * 65536)
		return wl_fail("fd 6 has SO_RCVBUF %d", v);
	l = sizeof(v);
	getsockopt(6, SOL_SOCKET, SO_PASSCRED, &v, &l);
	if (v != 1)
		return wl_fail("fd 6 lost SO_PASSCRED");
	if (dump_links())
		return -1;
	struct nlmsghdr h = { .nlmsg_len = sizeof(h), .nlmsg_type = NLMSG_NOOP, .nlmsg_seq = 42 };
	if (send(8, &h, sizeof(h), 0) != sizeof(h))
		return wl_fail("send on fd 8 (connected to port %u): %s", port + 1, strerror(errno));
	struct nlmsghdr got;
	struct sockaddr_nl from;
	socklen_t fl = sizeof(from);
	if (recvfrom(7, &got, sizeof(got), MSG_DONTWAIT, (struct sockaddr *)&from, &fl) != sizeof(got) ||
	    got.nlmsg_seq != 42)
		return wl_fail("fd 7 did not get fd 8's message");
	if (from.nl_pid != port + 2)
		return wl_fail("fd 8's message came from port %u, not %u", from.nl_pid, port + 2);
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	const char *mode = argc > 2 ? argv[2] : "all";
	setup(mode);
	wl_install_check_handler();
	wl_ready("case=%s port=%u autoport=%u", mode, port, autoport);
	wl_serve_checks("netlinksk", check);
}
