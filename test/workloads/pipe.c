/* Holds a pipe with PAYLOAD_LEN unread bytes, written in three writes of
 * different sizes so that they sit in several pipe buffers. Self-check
 * (SIGUSR1): read the pipe dry and compare with the payload ("PASS read=N"),
 * then write the payload again so that the next check finds it too. */
#include "workload.h"

#define PAYLOAD_LEN 10000

/* Also computed by the tests (test/helpers/workloads.ts). */
static unsigned char payload_byte(unsigned i)
{
	return (unsigned char)(i * 7 + 3 + (i >> 8));
}

static void fill(int wfd, const unsigned char *payload)
{
	static const size_t parts[] = { 1000, 5000, 4000 };
	size_t off = 0;
	for (unsigned i = 0; i < 3; i++) {
		if (write(wfd, payload + off, parts[i]) != (ssize_t)parts[i])
			wl_die("write pipe");
		off += parts[i];
	}
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	static unsigned char payload[PAYLOAD_LEN], got[PAYLOAD_LEN + 1];
	for (unsigned i = 0; i < PAYLOAD_LEN; i++)
		payload[i] = payload_byte(i);
	int p[2];
	if (pipe(p) < 0)
		wl_die("pipe");
	fill(p[1], payload);
	wl_install_check_handler();
	wl_ready("rfd=%d wfd=%d len=%d", p[0], p[1], PAYLOAD_LEN);
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
		if (fcntl(p[0], F_SETFL, O_NONBLOCK) < 0)
			wl_die("fcntl");
		size_t n = 0;
		for (;;) {
			ssize_t r = read(p[0], got + n, sizeof(got) - n);
			if (r <= 0)
				break;
			n += (size_t)r;
		}
		if (n != PAYLOAD_LEN)
			wl_result("FAIL read %zu bytes, want %d", n, PAYLOAD_LEN);
		else if (memcmp(got, payload, PAYLOAD_LEN) != 0)
			wl_result("FAIL pipe contents differ");
		else
			wl_result("PASS read=%zu", n);
		fcntl(p[0], F_SETFL, 0);
		fill(p[1], payload);
	}
}
