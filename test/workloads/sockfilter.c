/* Classic BPF socket filters (SO_ATTACH_FILTER); checks on every SIGUSR1
 * ("PASS sockfilter" or "FAIL …").
 *
 *   fd 3     UDP on 127.0.0.1, filter INET: passes only a 7-byte payload (the
 *            filter sees the UDP header too: 15 bytes). The check sends 5 and 7
 *            bytes to itself and must read the 7 only.
 *   fd 4, 5  unix datagram pair; "early" (5 bytes) was queued on fd 4 before its
 *            filter UNIX (7 bytes only) was attached: the check peeks it there,
 *            which it is only if the restore refilled the queue before attaching.
 *   fd 6, 7  unix datagram pair, filter UNIX on fd 6: the check sends 5 and 7
 *            bytes from fd 7 and must read the 7 only.
 * Every filter is read back with SO_GET_FILTER and compared with what was set.
 * argv[2] = "ebpf": fd 8 is a UDP socket with an eBPF program (SO_ATTACH_BPF),
 * which the dump refuses; "locked": fd 3's filter is locked (SO_LOCK_FILTER),
 * refused too; "unix": no fd 3 (criu 4.1 cannot dump an inet socket on Linux
 * 6.16 and later). */
#include "workload.h"

#include <linux/bpf.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <sys/syscall.h>

#ifndef SO_GET_FILTER
#define SO_GET_FILTER SO_ATTACH_FILTER
#endif
#ifndef SO_LOCK_FILTER
#define SO_LOCK_FILTER 44
#endif
#ifndef SO_ATTACH_BPF
#define SO_ATTACH_BPF 50
#endif

/* Accept (up to 0xffff bytes) a packet of exactly `len` bytes, drop any other. */
#define LEN_IS(len)                                                                                                    \
	{                                                                                                              \
		{ BPF_LD | BPF_W | BPF_LEN, 0, 0, 0 }, { BPF_JMP | BPF_JEQ | BPF_K, 0, 1, (len) },                     \
		    { BPF_RET | BPF_K, 0, 0, 0xffff }, { BPF_RET | BPF_K, 0, 0, 0 },                                   \
	}

static struct sock_filter inet_filter[] = LEN_IS(8 + 7);
static struct sock_filter unix_filter[] = LEN_IS(7);
#define NINSNS 4

static void attach(int fd, struct sock_filter *f)
{
	struct sock_fprog p = { .len = NINSNS, .filter = f };
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &p, sizeof(p)) < 0)
		wl_die("SO_ATTACH_FILTER");
}

static void pair_at(int a, int b)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0)
		wl_die("socketpair");
	/* Out of the way first: socketpair may have given `b` itself (fd 3 is free in "unix"). */
	int hi_a = fcntl(sv[0], F_DUPFD, 64), hi_b = fcntl(sv[1], F_DUPFD, 64);
	if (hi_a < 0 || hi_b < 0)
		wl_die("F_DUPFD");
	close(sv[0]);
	close(sv[1]);
	wl_fd_at(a, hi_a, "socketpair");
	wl_fd_at(b, hi_b, "socketpair");
}

/* An eBPF socket filter that passes everything ("r0 = 0xffff; exit"). */
static void attach_ebpf(int fd)
{
	struct bpf_insn prog[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0xffff },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	a.insns = (unsigned long)prog;
	a.insn_cnt = 2;
	a.license = (unsigned long)"GPL";
	int prog_fd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof(a));
	if (prog_fd < 0)
		wl_die("BPF_PROG_LOAD");
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_BPF, &prog_fd, sizeof(prog_fd)) < 0)
		wl_die("SO_ATTACH_BPF");
	close(prog_fd);
}

static void setup_inet(void)
{
	wl_fd_at(3, socket(AF_INET, SOCK_DGRAM, 0), "socket(AF_INET)");
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (bind(3, (struct sockaddr *)&a, sizeof(a)) < 0)
		wl_die("bind");
	attach(3, inet_filter);
}

static int with_inet;

static void setup(const char *mode)
{
	with_inet = strcmp(mode, "unix") != 0;
	if (with_inet)
		setup_inet();
	pair_at(4, 5);
	if (send(5, "early", 5, 0) != 5)
		wl_die("send(early)");
	attach(4, unix_filter);
	pair_at(6, 7);
	attach(6, unix_filter);
	if (!strcmp(mode, "ebpf")) {
		wl_fd_at(8, socket(AF_INET, SOCK_DGRAM, 0), "socket(AF_INET)");
		attach_ebpf(8);
	}
	if (!strcmp(mode, "locked")) {
		int one = 1;
		if (setsockopt(3, SOL_SOCKET, SO_LOCK_FILTER, &one, sizeof(one)) < 0)
			wl_die("SO_LOCK_FILTER");
	}
}

static int same_filter(int fd, const struct sock_filter *want)
{
	socklen_t n = 0;
	if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, NULL, &n) < 0)
		return wl_fail("fd %d: SO_GET_FILTER: %s", fd, strerror(errno));
	if (n != NINSNS)
		return wl_fail("fd %d has a filter of %u instructions, not %d", fd, (unsigned)n, NINSNS);
	struct sock_filter got[NINSNS];
	memset(got, 0, sizeof(got));
	if (getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, got, &n) < 0 || n != NINSNS)
		return wl_fail("fd %d: SO_GET_FILTER of the instructions: %s", fd, strerror(errno));
	for (int i = 0; i < NINSNS; i++)
		if (got[i].code != want[i].code || got[i].jt != want[i].jt || got[i].jf != want[i].jf ||
		    got[i].k != want[i].k)
			return wl_fail("fd %d: instruction %d is {%#x, %u, %u, %#x}, was {%#x, %u, %u, %#x}", fd, i,
				       got[i].code, got[i].jt, got[i].jf, got[i].k, want[i].code, want[i].jt,
				       want[i].jf, want[i].k);
	return 0;
}

/* Sends 5 bytes then 7 from `from` (to `to`, or connected when NULL); `fd` must
 * receive the 7 and nothing else. */
static int only_seven(int fd, int from, const struct sockaddr *to, socklen_t tl)
{
	if (sendto(from, "short", 5, 0, to, tl) != 5 || sendto(from, "seven!!", 7, 0, to, tl) != 7)
		return wl_fail("fd %d: send: %s", from, strerror(errno));
	char buf[16];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != 7 || memcmp(buf, "seven!!", 7))
		return wl_fail(
		    "fd %d got %zd bytes first, not the 7-byte message (the 5-byte one must be filtered out)", fd, n);
	n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n >= 0)
		return wl_fail("fd %d got %zd bytes more: its filter let them through", fd, n);
	return 0;
}

static int check(void)
{
	if ((with_inet && same_filter(3, inet_filter)) || same_filter(4, unix_filter) || same_filter(6, unix_filter))
		return -1;
	char buf[16];
	ssize_t n = recv(4, buf, sizeof(buf), MSG_DONTWAIT | MSG_PEEK);
	if (n != 5 || memcmp(buf, "early", 5))
		return wl_fail("fd 4 has %zd bytes first in its queue, not \"early\" (queued before its filter)", n);
	if (only_seven(6, 7, NULL, 0))
		return -1;
	if (!with_inet)
		return 0;
	struct sockaddr_in self;
	socklen_t sl = sizeof(self);
	if (getsockname(3, (struct sockaddr *)&self, &sl) < 0)
		return wl_fail("getsockname: %s", strerror(errno));
	return only_seven(3, 3, (struct sockaddr *)&self, sl);
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	const char *mode = argc > 2 ? argv[2] : "all";
	setup(mode);
	wl_install_check_handler();
	wl_ready("case=%s", mode);
	wl_serve_checks("sockfilter", check);
}
