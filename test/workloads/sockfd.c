/* A task holding a netlink socket (fd 5) with the kernel's answer to a link
 * dump queued on it, a socket this dump refuses (as criu does: a queue cannot
 * be put back), and a UDP socket on the loopback (fd 6): the dump must fail
 * with "unsupported fd 5: netlink socket ... queued" and leave the task running. Self-check (SIGUSR1):
 * fd 5 is still the netlink socket, and the UDP one still sends a datagram to
 * itself ("PASS"). */
#include "workload.h"

#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || getsockname(s, (struct sockaddr *)&a, &l) < 0)
		wl_die("socket");
	if (dup2(s, 6) < 0)
		wl_die("dup2");
	close(s);
	int nl = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	if (nl < 0 || dup2(nl, 5) < 0)
		wl_die("netlink");
	close(nl);
	struct {
		struct nlmsghdr h;
		struct rtgenmsg g;
	} req = {
		.h = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP },
		.g = { .rtgen_family = AF_UNSPEC }
	};
	if (send(5, &req, sizeof(req), 0) != sizeof(req))
		wl_die("netlink request");
	wl_install_check_handler();
	wl_write_counter(0);
	wl_ready("sock=5 udp=6");
	unsigned long long n = 0;
	for (;;) {
		wl_write_counter(++n);
		if (wl_check_requested) {
			wl_check_requested = 0;
			char c = 0;
			int dom = 0;
			socklen_t dl = sizeof(dom);
			if (getsockopt(5, SOL_SOCKET, SO_DOMAIN, &dom, &dl) == 0 && dom == AF_NETLINK &&
			    sendto(6, "x", 1, 0, (struct sockaddr *)&a, sizeof(a)) == 1 && recv(6, &c, 1, 0) == 1 &&
			    c == 'x')
				wl_result("PASS count=%llu", n);
			else
				wl_result("FAIL socket");
		}
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
	}
}
