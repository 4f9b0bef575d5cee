/* Packet sockets; checks on every SIGUSR1 ("PASS packetsk" or "FAIL …").
 *
 *   fd 3  SOCK_RAW, ETH_P_ALL, bound to lo: TPACKET_V2, PACKET_AUXDATA, PACKET_ORIGDEV,
 *         PACKET_RESERVE 128, PACKET_TIMESTAMP, in a fanout group of its own (hash, the
 *         group id from its pid), member of a multicast address on lo (01:00:5e and
 *         the pid's low 23 bits: its own); the check finds the address in
 *         /proc/net/dev_mcast and reads a UDP datagram it sends to 127.0.0.1 on fd 3.
 *         (No promiscuous membership: it would tell every netlink socket in the link
 *         group of the change, and another test's netlink socket would have a message
 *         queued at its dump.)
 *   fd 4  SOCK_DGRAM, ETH_P_IP, unbound, O_NONBLOCK, PACKET_LOSS, SO_RCVBUF 65536.
 *   fd 5  SOCK_RAW, ETH_P_IPV6, unbound, PACKET_VNET_HDR.
 *   fd 6  SOCK_PACKET (the old interface), ETH_P_ALL, bound to lo by name.
 * With argv[2] = "ring", fd 7 (ETH_P_ALL, bound to lo, TPACKET_V2) has a PACKET_RX_RING
 * of 4 blocks of 8 KiB mapped: the check finds the mapping where it was and the datagram
 * it sends in a frame of the ring. With "private", the same ring is mapped a second time,
 * a page apart, MAP_PRIVATE (as zdtm's packet_sock_mmap), never written: the check finds
 * that mapping where it was, private and of fd 7's socket, and the frame with the datagram
 * in it too (the restore maps the restored socket's ring again, no copy of the dumped
 * pages). With "bypass", fd 7 has PACKET_QDISC_BYPASS on (which the dump refuses). */
#include "workload.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define MAGIC "packetsk magic payload"

#define RING_BLOCK  8192
#define RING_BLOCKS 4
#define RING_FRAME  2048

static int lo;
/* fd 3's multicast address, as /proc/net/dev_mcast writes it */
static char mcast[13];
/* fd 7's mapped ring ("ring"), or NULL */
static unsigned char *ring;
/* the same ring mapped MAP_PRIVATE ("private"), or NULL */
static unsigned char *private_ring;
/* the fanout group id: the pid's, so that no other workload shares the group */
static int fanout;

static int packet_at(int fd, int type, int proto)
{
	return wl_fd_at(fd, socket(AF_PACKET, type, proto), "socket(AF_PACKET)");
}

static void setup(const char *mode)
{
	lo = (int)if_nametoindex("lo");
	if (!lo)
		wl_die("if_nametoindex(lo)");
	packet_at(3, SOCK_RAW, htons(ETH_P_ALL));
	struct sockaddr_ll a = { .sll_family = AF_PACKET, .sll_ifindex = lo };
	if (bind(3, (struct sockaddr *)&a, sizeof(a)) < 0)
		wl_die("bind(lo)");
	wl_set_int(3, SOL_PACKET, PACKET_VERSION, TPACKET_V2, "PACKET_VERSION");
	wl_set_int(3, SOL_PACKET, PACKET_AUXDATA, 1, "PACKET_AUXDATA");
	wl_set_int(3, SOL_PACKET, PACKET_ORIGDEV, 1, "PACKET_ORIGDEV");
	wl_set_int(3, SOL_PACKET, PACKET_RESERVE, 128, "PACKET_RESERVE");
	wl_set_int(3, SOL_PACKET, PACKET_TIMESTAMP, 1, "PACKET_TIMESTAMP");
	wl_set_int(3, SOL_PACKET, PACKET_COPY_THRESH, 256, "PACKET_COPY_THRESH");
	fanout = getpid() & 0xffff;
	wl_set_int(3, SOL_PACKET, PACKET_FANOUT, fanout | (PACKET_FANOUT_HASH << 16), "PACKET_FANOUT");
	unsigned id = (unsigned)getpid() & 0x7fffff;
	struct packet_mreq mc = { .mr_ifindex = lo,
				  .mr_type = PACKET_MR_MULTICAST,
				  .mr_alen = 6,
				  .mr_address = { 0x01, 0x00, 0x5e, (unsigned char)(id >> 16), (unsigned char)(id >> 8),
						  (unsigned char)id } };
	snprintf(mcast, sizeof(mcast), "%02x%02x%02x%02x%02x%02x", mc.mr_address[0], mc.mr_address[1], mc.mr_address[2],
		 mc.mr_address[3], mc.mr_address[4], mc.mr_address[5]);
	if (setsockopt(3, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mc, sizeof(mc)) < 0)
		wl_die("PACKET_MR_MULTICAST");
	packet_at(4, SOCK_DGRAM, htons(ETH_P_IP));
	fcntl(4, F_SETFL, O_NONBLOCK);
	wl_set_int(4, SOL_PACKET, PACKET_LOSS, 1, "PACKET_LOSS");
	wl_set_int(4, SOL_SOCKET, SO_RCVBUF, 65536, "SO_RCVBUF");
	packet_at(5, SOCK_RAW, htons(ETH_P_IPV6));
	wl_set_int(5, SOL_PACKET, PACKET_VNET_HDR, 1, "PACKET_VNET_HDR");
	packet_at(6, SOCK_PACKET, htons(ETH_P_ALL));
	struct sockaddr old = { .sa_family = AF_PACKET };
	strcpy(old.sa_data, "lo");
	if (bind(6, &old, sizeof(old)) < 0)
		wl_die("bind(SOCK_PACKET, lo)");
	if (!strcmp(mode, "ring") || !strcmp(mode, "private")) {
		packet_at(7, SOCK_RAW, htons(ETH_P_ALL));
		if (bind(7, (struct sockaddr *)&a, sizeof(a)) < 0)
			wl_die("bind(lo) of the ring's socket");
		wl_set_int(7, SOL_PACKET, PACKET_VERSION, TPACKET_V2, "PACKET_VERSION of the ring");
		struct tpacket_req req = { .tp_block_size = RING_BLOCK,
					   .tp_block_nr = RING_BLOCKS,
					   .tp_frame_size = RING_FRAME,
					   .tp_frame_nr = RING_BLOCK / RING_FRAME * RING_BLOCKS };
		if (setsockopt(7, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0)
			wl_die("PACKET_RX_RING");
		size_t len = RING_BLOCK * RING_BLOCKS;
		if (!strcmp(mode, "private")) {
			/* the private mapping a page of other memory apart from the shared one:
			 * criu 4.2 takes a mapping of a socket right after another of the
			 * same socket for anonymous memory, and fails to dump it */
			unsigned char *area = mmap(NULL, 2 * len + 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (area == MAP_FAILED)
				wl_die("mmap(room for the rings)");
			ring = mmap(area, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, 7, 0);
			private_ring =
			    mmap(area + len + 4096, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, 7, 0);
			if (private_ring == MAP_FAILED)
				wl_die("mmap(ring, MAP_PRIVATE)");
		} else {
			ring = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, 7, 0);
		}
		if (ring == MAP_FAILED)
			wl_die("mmap(ring)");
	}
	if (!strcmp(mode, "bypass")) {
		packet_at(7, SOCK_RAW, htons(ETH_P_ALL));
		wl_set_int(7, SOL_PACKET, PACKET_QDISC_BYPASS, 1, "PACKET_QDISC_BYPASS");
	}
}

/* A UDP datagram to 127.0.0.1 shows on fd 3 (bound to lo, ETH_P_ALL). */
static int sniff(void)
{
	char drain[65536];
	while (recv(3, drain, sizeof(drain), MSG_DONTWAIT) > 0)
		;
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9), .sin_addr = { htonl(INADDR_LOOPBACK) } };
	if (u < 0 || sendto(u, MAGIC, sizeof(MAGIC), 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		return wl_fail("sendto 127.0.0.1: %s", strerror(errno));
	close(u);
	for (int i = 0; i < 200; i++) {
		struct pollfd p = { .fd = 3, .events = POLLIN };
		if (poll(&p, 1, 10) <= 0)
			continue;
		ssize_t n = recv(3, drain, sizeof(drain), MSG_DONTWAIT);
		if (n > 0 && memmem(drain, (size_t)n, MAGIC, sizeof(MAGIC)))
			return 0;
	}
	return wl_fail("fd 3 did not see the datagram sent to 127.0.0.1");
}

/* Whether lo has the multicast address `mcast` (/proc/net/dev_mcast: index, name, users,
 * global, address). */
static int lo_has_mcast(void)
{
	char line[256], name[32], addr[64];
	int index, users, global, found = 0;
	FILE *f = fopen("/proc/net/dev_mcast", "re");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%d %31s %d %d %63s", &index, name, &users, &global, addr) == 5 && index == lo &&
		    !strcmp(addr, mcast))
			found = 1;
	if (f)
		fclose(f);
	return found;
}

/* Whether /proc/self/maps has a mapping at `at` with the protection and sharing `perms`
 * (as "rw-s") of fd 7's socket. */
static int ring_mapped(const unsigned char *at, const char *perms)
{
	char line[512], want[64], name[64];
	struct stat st;
	if (fstat(7, &st) < 0)
		return 0;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)at);
	snprintf(name, sizeof(name), "socket:[%lu]", (unsigned long)st.st_ino);
	FILE *m = fopen("/proc/self/maps", "re");
	int mapped = 0;
	while (m && fgets(line, sizeof(line), m)) {
		char *sp = strchr(line, ' ');
		if (!strncmp(line, want, strlen(want)) && sp && !strncmp(sp + 1, perms, 4) && strstr(line, name))
			mapped = 1;
	}
	if (m)
		fclose(m);
	return mapped;
}

/* The ring is where it was, mapped from fd 7's socket, and a datagram to 127.0.0.1 shows in
 * one of its frames (each frame given back to the kernel once looked at); the private
 * mapping of it, if any, shows the same frame. */
static int ring_sees(void)
{
	if (!ring_mapped(ring, "rw-s"))
		return wl_fail("the ring at %p is not a shared mapping of fd 7 any more", (void *)ring);
	if (private_ring && !ring_mapped(private_ring, "rw-p"))
		return wl_fail("the ring at %p is not a private mapping of fd 7 any more", (void *)private_ring);
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9), .sin_addr = { htonl(INADDR_LOOPBACK) } };
	if (u < 0 || sendto(u, MAGIC, sizeof(MAGIC), 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		return wl_fail("sendto 127.0.0.1: %s", strerror(errno));
	close(u);
	for (int tries = 0; tries < 200; tries++) {
		for (int i = 0; i < RING_BLOCK / RING_FRAME * RING_BLOCKS; i++) {
			volatile struct tpacket2_hdr *h = (void *)(ring + i * RING_FRAME);
			if (!(h->tp_status & TP_STATUS_USER))
				continue;
			int seen = h->tp_mac + h->tp_snaplen <= RING_FRAME &&
				   memmem(ring + i * RING_FRAME + h->tp_mac, h->tp_snaplen, MAGIC, sizeof(MAGIC));
			int same =
			    !private_ring || !memcmp(private_ring + i * RING_FRAME, ring + i * RING_FRAME, RING_FRAME);
			h->tp_status = TP_STATUS_KERNEL;
			if (seen && !same)
				return wl_fail("the private mapping at %p does not show frame %d of the ring",
					       (void *)private_ring, i);
			if (seen)
				return 0;
		}
		struct pollfd p = { .fd = 7, .events = POLLIN };
		poll(&p, 1, 10);
	}
	return wl_fail("the ring of fd 7 did not get the datagram sent to 127.0.0.1");
}

static int check(void)
{
	static const struct {
		int fd, type, proto;
	} want[] = {
		{ 3, SOCK_RAW, ETH_P_ALL },
		{ 4, SOCK_DGRAM, ETH_P_IP },
		{ 5, SOCK_RAW, ETH_P_IPV6 },
		{ 6, SOCK_PACKET, ETH_P_ALL },
	};
	struct sockaddr_ll a;
	socklen_t l;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		int fd = want[i].fd;
		if (wl_get_int(fd, SOL_SOCKET, SO_DOMAIN) != AF_PACKET ||
		    wl_get_int(fd, SOL_SOCKET, SO_TYPE) != want[i].type)
			return wl_fail("fd %d: domain %d type %d", fd, wl_get_int(fd, SOL_SOCKET, SO_DOMAIN),
				       wl_get_int(fd, SOL_SOCKET, SO_TYPE));
		if (want[i].type == SOCK_PACKET)
			continue;
		/* the protocol shows in the name (SO_PROTOCOL says 0 for packet sockets) */
		memset(&a, 0, sizeof(a));
		l = sizeof(a);
		if (getsockname(fd, (struct sockaddr *)&a, &l) < 0 || a.sll_protocol != htons(want[i].proto))
			return wl_fail("fd %d: protocol 0x%x, want 0x%x", fd, ntohs(a.sll_protocol), want[i].proto);
	}
	l = sizeof(a);
	if (getsockname(3, (struct sockaddr *)&a, &l) < 0 || a.sll_ifindex != lo)
		return wl_fail("fd 3 is bound to ifindex %d, not lo (%d)", a.sll_ifindex, lo);
	if (wl_get_int(3, SOL_PACKET, PACKET_VERSION) != TPACKET_V2 || wl_get_int(3, SOL_PACKET, PACKET_AUXDATA) != 1 ||
	    wl_get_int(3, SOL_PACKET, PACKET_ORIGDEV) != 1 || wl_get_int(3, SOL_PACKET, PACKET_RESERVE) != 128 ||
	    wl_get_int(3, SOL_PACKET, PACKET_TIMESTAMP) != 1)
		return wl_fail("fd 3: version %d auxdata %d origdev %d reserve %d timestamp %d",
			       wl_get_int(3, SOL_PACKET, PACKET_VERSION), wl_get_int(3, SOL_PACKET, PACKET_AUXDATA),
			       wl_get_int(3, SOL_PACKET, PACKET_ORIGDEV), wl_get_int(3, SOL_PACKET, PACKET_RESERVE),
			       wl_get_int(3, SOL_PACKET, PACKET_TIMESTAMP));
	if (wl_get_int(3, SOL_PACKET, PACKET_FANOUT) != (fanout | (PACKET_FANOUT_HASH << 16)))
		return wl_fail("fd 3: fanout 0x%x", wl_get_int(3, SOL_PACKET, PACKET_FANOUT));
	if (!lo_has_mcast())
		return wl_fail("lo has not the multicast address %s: fd 3's membership is gone", mcast);
	if (!(fcntl(4, F_GETFL) & O_NONBLOCK))
		return wl_fail("fd 4 lost O_NONBLOCK");
	if (wl_get_int(4, SOL_PACKET, PACKET_LOSS) != 1)
		return wl_fail("fd 4 lost PACKET_LOSS");
	if (wl_get_int(4, SOL_SOCKET, SO_RCVBUF) != 2 * 65536)
		return wl_fail("fd 4 has SO_RCVBUF %d", wl_get_int(4, SOL_SOCKET, SO_RCVBUF));
	if (wl_get_int(5, SOL_PACKET, PACKET_VNET_HDR) != 1)
		return wl_fail("fd 5 lost PACKET_VNET_HDR");
	struct sockaddr old;
	l = sizeof(old);
	if (getsockname(6, &old, &l) < 0 || strcmp(old.sa_data, "lo"))
		return wl_fail("fd 6 (SOCK_PACKET) is bound to \"%.14s\", not lo", old.sa_data);
	if (ring && ring_sees())
		return -1;
	return sniff();
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	const char *mode = argc > 2 ? argv[2] : "all";
	setup(mode);
	wl_install_check_handler();
	wl_ready("case=%s lo=%d fanout=%d", mode, lo, fanout);
	wl_serve_checks("packetsk", check);
}
