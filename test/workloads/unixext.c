/* Unix sockets connected to sockets outside the dumped tree (criu's external unix
 * sockets). Cases (argv[2]), the server's directory in argv[3]:
 * - server: not dumped; the peer outside. A datagram socket bound to DIR/log.sock
 *   appends every datagram to DIR/got (a line each), a listener on DIR/echo.sock echoes
 *   what each connection sends; a thread serves both.
 * - dgram: fd 10 is a datagram socket connected to DIR/log.sock (as syslog's /dev/log).
 *   Check: its peer is still DIR/log.sock and it sends "check PID N" there (the test reads
 *   DIR/got to see the server had it).
 * - stream: fd 11 is a stream connection to DIR/echo.sock. Check: it is still connected
 *   there, and "ping N" comes back. */
#include "workload.h"

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>

static const char *server_dir;
static unsigned checks;

static struct sockaddr_un in_dir(const char *name)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if ((size_t)snprintf(a.sun_path, sizeof(a.sun_path), "%s/%s", server_dir, name) >= sizeof(a.sun_path))
		wl_die("socket path too long");
	return a;
}

static void *serve(void *arg)
{
	int *fds = arg;
	struct pollfd p[66] = { { .fd = fds[0], .events = POLLIN }, { .fd = fds[1], .events = POLLIN } };
	int n = 2;
	char path[4096], buf[512];
	snprintf(path, sizeof(path), "%s/got", server_dir);
	for (;;) {
		if (poll(p, (nfds_t)n, -1) < 0)
			continue;
		if (p[0].revents & POLLIN) {
			ssize_t r = recv(fds[0], buf, sizeof(buf) - 1, 0);
			if (r > 0) {
				buf[r] = '\n';
				int f = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
				if (f < 0 || write(f, buf, (size_t)r + 1) != r + 1)
					wl_die("write got");
				close(f);
			}
		}
		if ((p[1].revents & POLLIN) && n < 66) {
			int c = accept4(fds[1], NULL, NULL, SOCK_CLOEXEC);
			if (c >= 0)
				p[n++] = (struct pollfd){ .fd = c, .events = POLLIN };
		}
		for (int i = 2; i < n; i++) {
			if (!p[i].revents)
				continue;
			ssize_t r = recv(p[i].fd, buf, sizeof(buf), 0);
			if (r <= 0 || send(p[i].fd, buf, (size_t)r, MSG_NOSIGNAL) != r) {
				close(p[i].fd);
				p[i--] = p[--n];
			}
		}
	}
	return NULL;
}

static void server_setup(void)
{
	static int fds[2];
	struct sockaddr_un log = in_dir("log.sock"), echo = in_dir("echo.sock");
	fds[0] = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	fds[1] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fds[0] < 0 || fds[1] < 0 || bind(fds[0], (struct sockaddr *)&log, sizeof(log)) < 0 ||
	    bind(fds[1], (struct sockaddr *)&echo, sizeof(echo)) < 0 || listen(fds[1], 16) < 0)
		wl_die("server sockets");
	pthread_t t;
	if (pthread_create(&t, NULL, serve, fds) != 0)
		wl_die("pthread_create");
}

static int server_check(void)
{
	return 0;
}

/* Whether fd's peer is DIR/name. */
static int peer_is(int fd, const char *name)
{
	struct sockaddr_un want = in_dir(name), got = { 0 };
	socklen_t l = sizeof(got);
	if (getpeername(fd, (struct sockaddr *)&got, &l) < 0)
		return wl_fail("getpeername of fd %d: %s", fd, strerror(errno));
	if (strcmp(got.sun_path, want.sun_path) != 0)
		return wl_fail("fd %d is connected to %s, not %s", fd, got.sun_path, want.sun_path);
	return 0;
}

static void dgram_setup(void)
{
	struct sockaddr_un log = in_dir("log.sock");
	int s = wl_fd_at(10, socket(AF_UNIX, SOCK_DGRAM, 0), "socket");
	if (connect(s, (struct sockaddr *)&log, sizeof(log)) < 0)
		wl_die("connect to log.sock");
}

static int dgram_check(void)
{
	char line[64];
	if (peer_is(10, "log.sock") < 0)
		return -1;
	int n = snprintf(line, sizeof(line), "check %d %u", (int)getpid(), ++checks);
	if (send(10, line, (size_t)n, 0) != n)
		return wl_fail("send on fd 10: %s", strerror(errno));
	return 0;
}

static void stream_setup(void)
{
	struct sockaddr_un echo = in_dir("echo.sock");
	int s = wl_fd_at(11, socket(AF_UNIX, SOCK_STREAM, 0), "socket");
	if (connect(s, (struct sockaddr *)&echo, sizeof(echo)) < 0)
		wl_die("connect to echo.sock");
}

static int stream_check(void)
{
	char line[64], back[64];
	if (peer_is(11, "echo.sock") < 0)
		return -1;
	int n = snprintf(line, sizeof(line), "ping %u", ++checks);
	if (send(11, line, (size_t)n, MSG_NOSIGNAL) != n)
		return wl_fail("send on fd 11: %s", strerror(errno));
	int got = 0;
	while (got < n) {
		struct pollfd p = { .fd = 11, .events = POLLIN };
		if (poll(&p, 1, 5000) != 1)
			return wl_fail("no echo on fd 11 within 5 s (%d of %d bytes)", got, n);
		ssize_t r = recv(11, back + got, (size_t)(n - got), 0);
		if (r <= 0)
			return wl_fail("recv on fd 11: %s", r == 0 ? "EOF" : strerror(errno));
		got += (int)r;
	}
	if (memcmp(line, back, (size_t)n) != 0)
		return wl_fail("fd 11 echoed %.*s for %s", n, back, line);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct wl_case cases[] = {
		{ "server", server_setup, server_check },
		{ "dgram", dgram_setup, dgram_check },
		{ "stream", stream_setup, stream_check },
	};
	if (argc < 4) {
		fprintf(stderr, "usage: %s STATE_DIR server|dgram|stream SERVER_DIR\n", argv[0]);
		return 2;
	}
	server_dir = argv[3];
	return wl_run_case(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
