/* A Unix98 pty pair made inside the tree, held by two processes:
 *
 *   P  a session leader (the test's spawn makes it one): the master (in packet mode
 *      with the argument "packet", locked with "locked") and a slave description, opened as its
 *      session's controlling terminal, whose owner is 1234:5678 and whose termios (no
 *      echo, VINTR ^A, VEOF ^E) and window size (40x120) were changed; and /dev/tty
 *   C  its child, in its session: a slave description, and /dev/tty of its own with the
 *      argument "child-tty"
 *
 * criu 4.x restores none of the options: it opens the slave for the session after it
 * locked the master; it forks C before P takes its terminal, so C has none; it keeps the
 * status bytes of a packet-mode master's data; it writes the master's data into the
 * slave again, whose ONLCR makes "\r\r\n" of "\r\n"; its dump leaves a partial line
 * out (a canonical read does not return it). Its dump takes /dev/tty only in
 * a task that met the pty first, with the session's group in front.
 *
 * Data waits in both directions: "from-slave" written on the slave, "from-slave\n" with
 * "crlf" (the master reads "from-slave\r\n", ONLCR), and "to-slave line 1\n" written on
 * the master, then "to-slave partial" with "partial" (the start of a line for the slave).
 *
 * On SIGUSR1 P checks the termios, window size, owner, packet and lock modes; reads
 * the master (one data packet); reads the slave's whole line, sees the partial one is
 * still partial and completes it; checks that C's session and group own the terminal;
 * then pings C, which reads the line through /dev/tty and answers on its slave with its
 * session's facts. Then the queued data is written again for the next check.
 * "PASS pty=N" or "FAIL pty: why". */
#include "workload.h"

#include <poll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <termios.h>

static int master, slave, ptyn, locked, child_tty, packet, crlf, partial;
static pid_t child;

static void fill(void)
{
	const char *from = crlf ? "from-slave\n" : "from-slave";
	const char *to = partial ? "to-slave line 1\nto-slave partial" : "to-slave line 1\n";
	if (write(slave, from, strlen(from)) != (ssize_t)strlen(from) ||
	    write(master, to, strlen(to)) != (ssize_t)strlen(to))
		wl_die("write queued data");
}

/* C: waits for SIGUSR2, reads a line through /dev/tty (or its slave), answers on its slave. */
static void child_loop(int tty, int own)
{
	sigset_t usr2, none;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	sigemptyset(&none);
	for (;;) {
		int sig;
		if (sigwait(&usr2, &sig) != 0)
			continue;
		char line[64], out[160];
		ssize_t n = read(tty, line, sizeof(line) - 1);
		if (n < 0)
			n = 0;
		line[n] = 0;
		line[strcspn(line, "\n")] = 0;
		int ok = getsid(0) == getppid() &&
			 (tty == own || (tcgetpgrp(tty) == getpgrp() && tcgetsid(own) == getppid()));
		int len = snprintf(out, sizeof(out), "pong %s %s\n", line, ok ? "ctty-ok" : "ctty-bad");
		if (write(own, out, (size_t)len) != len)
			_exit(3);
	}
	(void)none;
}

/* One read of the master (in packet mode: the data of a data packet). */
static int read_packet(char *buf, size_t len, size_t *got)
{
	char pkt[256];
	ssize_t n = read(master, pkt, sizeof(pkt));
	if (n < packet)
		return wl_fail("read of the master: %zd (%s)", n, strerror(errno));
	if (packet && pkt[0] != 0)
		return wl_fail("master packet status 0x%x, want data (0)", (unsigned char)pkt[0]);
	*got = (size_t)n - packet < len - 1 ? (size_t)n - packet : len - 1;
	memcpy(buf, pkt + packet, *got);
	buf[*got] = 0;
	return 0;
}

/* A whole line from the master: the terminal may hand a line over in pieces (its output
 * processing writes the text, then the CR-LF it makes of the newline), so pieces are read
 * until one ends in a newline, for up to 5 s. */
static int read_line(char *buf, size_t len)
{
	size_t at = 0;
	buf[0] = 0;
	while (at == 0 || buf[at - 1] != '\n') {
		struct pollfd p = { .fd = master, .events = POLLIN };
		int n;
		while ((n = poll(&p, 1, 5000)) < 0 && errno == EINTR)
			;
		if (n != 1)
			return wl_fail("the master gave \"%s\" and no newline in 5 s", buf);
		size_t got;
		if (at + 1 >= len || read_packet(buf + at, len - at, &got))
			return at + 1 >= len ? wl_fail("a line longer than %zu bytes from the master", len) : -1;
		at += got;
	}
	return 0;
}

static int check(void)
{
	struct termios t;
	struct winsize ws;
	struct stat st;
	int pkt = -1, lck = -1;
	if (tcgetattr(slave, &t) < 0 || ioctl(slave, TIOCGWINSZ, &ws) < 0 || fstat(slave, &st) < 0)
		return wl_fail("terminal state: %s", strerror(errno));
	if ((t.c_lflag & ECHO) || !(t.c_lflag & ICANON) || !(t.c_oflag & ONLCR) || t.c_cc[VINTR] != 1 ||
	    t.c_cc[VQUIT] != 034 || t.c_cc[VERASE] != 0177 || t.c_cc[VEOF] != 5 || t.c_cc[VSUSP] != 032)
		return wl_fail("slave termios lflag %#x oflag %#x VINTR %d VQUIT %d VERASE %d VEOF %d VSUSP %d",
			       t.c_lflag, t.c_oflag, t.c_cc[VINTR], t.c_cc[VQUIT], t.c_cc[VERASE], t.c_cc[VEOF],
			       t.c_cc[VSUSP]);
	if (ws.ws_row != 40 || ws.ws_col != 120)
		return wl_fail("window %dx%d, want 40x120", ws.ws_row, ws.ws_col);
	if (st.st_uid != 1234 || st.st_gid != 5678)
		return wl_fail("slave owner %d:%d, want 1234:5678", (int)st.st_uid, (int)st.st_gid);
	if (ioctl(master, TIOCGPKT, &pkt) < 0 || ioctl(master, TIOCGPTLCK, &lck) < 0 || pkt != packet || lck != locked)
		return wl_fail("packet mode %d, lock %d, want %d and %d", pkt, lck, packet, locked);
	int index = -1;
	if (ioctl(master, TIOCGPTN, &index) < 0 || index != ptyn)
		return wl_fail("pty index %d, want %d", index, ptyn);

	char buf[256];
	size_t got;
	if (read_packet(buf, sizeof(buf), &got))
		return -1;
	if (strcmp(buf, crlf ? "from-slave\r\n" : "from-slave") != 0)
		return wl_fail("master read \"%s\"", buf);
	ssize_t n = read(slave, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	if (strcmp(buf, "to-slave line 1\n") != 0)
		return wl_fail("slave read \"%s\" (%zd)", buf, n);
	struct pollfd pf = { .fd = slave, .events = POLLIN };
	if (poll(&pf, 1, 0) != 0)
		return wl_fail("%s", partial ? "the partial line reads as a whole one" : "more to read on the slave");
	if (write(master, " done\n", 6) != 6)
		return wl_fail("write to the master: %s", strerror(errno));
	n = read(slave, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = 0;
	if (strcmp(buf, partial ? "to-slave partial done\n" : " done\n") != 0)
		return wl_fail("slave read \"%s\" after completing the line", buf);

	pid_t sid = -1, pgrp = -1;
	if (ioctl(master, TIOCGSID, &sid) < 0 || ioctl(master, TIOCGPGRP, &pgrp) < 0 || sid != getpid() ||
	    pgrp != getpid())
		return wl_fail("the terminal's session %d and group %d, want %d", sid, pgrp, getpid());
	if (write(master, "ping\n", 5) != 5 || kill(child, SIGUSR2) < 0)
		return wl_fail("ping: %s", strerror(errno));
	if (read_line(buf, sizeof(buf)))
		return -1;
	if (strcmp(buf, "pong ping ctty-ok\r\n") != 0)
		return wl_fail("the child answered \"%s\"", buf);
	fill();
	snprintf(wl_failure, sizeof(wl_failure), "pty=%d", ptyn);
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	for (int i = 2; i < argc; i++) {
		locked |= strcmp(argv[i], "locked") == 0;
		child_tty |= strcmp(argv[i], "child-tty") == 0;
		packet |= strcmp(argv[i], "packet") == 0;
		crlf |= strcmp(argv[i], "crlf") == 0;
		partial |= strcmp(argv[i], "partial") == 0;
	}
	if (getsid(0) != getpid())
		wl_die("not a session leader");
	/* Above the 16 lowest free indexes: other tests running meanwhile (script(1)) take the
	 * lowest, and a restore needs this one free. criu looks at most 31 above the lowest. */
	int low[16];
	for (int i = 0; i < 16; i++)
		if ((low[i] = posix_openpt(O_RDWR | O_NOCTTY)) < 0)
			wl_die("posix_openpt");
	master = posix_openpt(O_RDWR | O_NOCTTY);
	for (int i = 0; i < 16; i++)
		close(low[i]);
	if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0)
		wl_die("posix_openpt");
	const char *name = ptsname(master);
	if (!name || ioctl(master, TIOCGPTN, &ptyn) < 0)
		wl_die("ptsname");
	char path[64];
	snprintf(path, sizeof(path), "%s", name);
	slave = open(path, O_RDWR); /* a session leader's first terminal: its controlling one */
	int tty = open("/dev/tty", O_RDWR);
	if (slave < 0 || tty < 0)
		wl_die("open the controlling terminal");
	struct termios t;
	if (tcgetattr(slave, &t) < 0)
		wl_die("tcgetattr");
	t.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK);
	t.c_cc[VINTR] = 1;
	t.c_cc[VEOF] = 5;
	struct winsize ws = { .ws_row = 40, .ws_col = 120 };
	if (tcsetattr(slave, TCSANOW, &t) < 0 || ioctl(slave, TIOCSWINSZ, &ws) < 0 || fchown(slave, 1234, 5678) < 0)
		wl_die("terminal settings");

	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	sigprocmask(SIG_BLOCK, &usr2, NULL);
	int sync[2];
	if (pipe(sync) < 0)
		wl_die("pipe");
	child = fork();
	if (child < 0)
		wl_die("fork");
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(master);
		close(slave);
		close(tty);
		int own = open(path, O_RDWR);
		tty = child_tty ? open("/dev/tty", O_RDWR) : own;
		if (own < 0 || tty < 0)
			wl_die("open the terminal");
		if (write(sync[1], "k", 1) != 1)
			wl_die("sync");
		child_loop(tty, own);
	}
	char c;
	if (read(sync[0], &c, 1) != 1)
		wl_die("sync");
	close(sync[0]);
	close(sync[1]);
	int on = 1;
	if (packet && ioctl(master, TIOCPKT, &on) < 0)
		wl_die("TIOCPKT");
	fill();
	if (locked && ioctl(master, TIOCSPTLCK, &on) < 0)
		wl_die("TIOCSPTLCK");
	wl_install_check_handler();
	wl_ready("child=%d pty=%d", child, ptyn);
	wl_serve_checks("pty", check);
}
