/* File leases (fcntl F_SETLEASE), as a file server holds them to learn that a client
 * opened a file it caches:
 *
 *   rd   open read-only, a read lease.
 *   wr   open read-write, a write lease.
 *   br   open read-write, a write lease being broken: an open for writing of its own,
 *        without blocking, started the break (to unlock) before the dump.
 *
 * Each fd's lease signal is LEASE_SIG (F_SETSIG), counted by fd. On SIGUSR1 the check:
 * F_GETLEASE gives read, write and unlock (the target of the break); opening rd for
 * writing and wr for reading, without blocking, fails with EWOULDBLOCK and brings the
 * lease signal for that fd; then the two leases are let go and taken again, so the check
 * can run again. A lease signal nobody asked for fails the check (once: the next one
 * looks at the leases). */
#include "workload.h"

#define LEASE_SIG (SIGRTMIN + 2)

static char rd_path[4096], wr_path[4096], br_path[4096];
static volatile sig_atomic_t signals, last_fd = -1;

static void on_lease(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	signals++;
	last_fd = si->si_fd;
}

static int leased(const char *path, int flags, int type)
{
	int fd = open(path, flags | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		wl_die(path);
	if (fcntl(fd, F_SETSIG, LEASE_SIG) < 0 || fcntl(fd, F_SETLEASE, type) < 0)
		wl_die("F_SETLEASE");
	return fd;
}

/* Opens `path` with `flags` without blocking: it must fail with EWOULDBLOCK and signal `fd`. */
static int breaks(const char *path, int flags, int fd)
{
	int before = signals;
	int b = open(path, flags | O_NONBLOCK | O_CLOEXEC);
	if (b >= 0) {
		close(b);
		return wl_fail("an open of %s did not break the lease", path);
	}
	if (errno != EWOULDBLOCK)
		return wl_fail("an open of %s: %s", path, strerror(errno));
	for (int i = 0; i < 10000 && signals == before; i++)
		usleep(1000);
	if (signals != before + 1 || last_fd != fd)
		return wl_fail("the break of %s: %d signals, for fd %d, not fd %d", path, (int)(signals - before),
			       (int)last_fd, fd);
	return 0;
}

static int rd, wr, br;

static int check(void)
{
	if (signals != 0) {
		int n = signals;
		signals = 0; /* the next check looks at the leases */
		return wl_fail("%d lease signals came unasked (fd %d)", n, (int)last_fd);
	}
	int a = fcntl(rd, F_GETLEASE), b = fcntl(wr, F_GETLEASE), c = fcntl(br, F_GETLEASE);
	if (a != F_RDLCK || b != F_WRLCK || c != F_UNLCK)
		return wl_fail("F_GETLEASE gives %d %d %d, not %d %d %d", a, b, c, F_RDLCK, F_WRLCK, F_UNLCK);
	if (breaks(rd_path, O_WRONLY, rd) || breaks(wr_path, O_RDONLY, wr))
		return -1;
	if (fcntl(wr, F_GETLEASE) != F_RDLCK)
		return wl_fail("the write lease is not being broken to read");
	if (fcntl(rd, F_SETLEASE, F_UNLCK) < 0 || fcntl(wr, F_SETLEASE, F_UNLCK) < 0 ||
	    fcntl(rd, F_SETLEASE, F_RDLCK) < 0 || fcntl(wr, F_SETLEASE, F_WRLCK) < 0)
		return wl_fail("taking the leases again: %s", strerror(errno));
	/* Letting a lease go drops the description's owner (lease_modify's f_delown), F_SETSIG's signal too. */
	if (fcntl(rd, F_SETSIG, LEASE_SIG) < 0 || fcntl(wr, F_SETSIG, LEASE_SIG) < 0)
		return wl_fail("F_SETSIG: %s", strerror(errno));
	signals = 0;
	last_fd = -1;
	return 0;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	snprintf(rd_path, sizeof(rd_path), "%s/rd", wl_dir);
	snprintf(wr_path, sizeof(wr_path), "%s/wr", wl_dir);
	snprintf(br_path, sizeof(br_path), "%s/br", wl_dir);
	struct sigaction sa = { .sa_sigaction = on_lease, .sa_flags = SA_SIGINFO | SA_RESTART };
	if (sigaction(LEASE_SIG, &sa, NULL) < 0)
		wl_die("sigaction");
	close(open(rd_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
	rd = leased(rd_path, O_RDONLY, F_RDLCK);
	wr = leased(wr_path, O_RDWR, F_WRLCK);
	br = leased(br_path, O_RDWR, F_WRLCK);
	if (breaks(br_path, O_WRONLY, br))
		wl_die(wl_failure);
	signals = 0;
	last_fd = -1;
	/* fd 100: a pipe, a non-regular fd for the tests' hostile images */
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0 || dup2(p[0], 100) < 0)
		wl_die("pipe");
	wl_install_check_handler();
	wl_ready("");
	wl_serve_checks("leases", check);
}
