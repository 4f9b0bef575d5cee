/* memfds a program relies on after a restore:
 *
 *   fd 20  a memfd holding a copy of this program, read-write as memfd_create made it,
 *          mapped shared and writable; fd 21 the same memfd opened read-only through
 *          /proc/self/fd, mapped privately. A child execveat()s fd 20 (AT_EMPTY_PATH)
 *          with the argument "exit42": the copy must run and exit with 42, which the
 *          kernel refuses (ETXTBSY) while any description opened writable through a path
 *          exists. (An ELF, not a script: a script needs /dev/fd, which a chroot may lack.)
 *   fd 22  a sealable memfd sealed against shrinking, growing and future writes
 *          (F_SEAL_FUTURE_WRITE) after a writable shared mapping of it was made: the
 *          mapping still writes, write() is refused with EPERM.
 *   fd 23  a memfd sealed against writes and further seals (F_SEAL_WRITE | F_SEAL_SEAL).
 *
 * On SIGUSR1 all of it is checked, with each fd's access mode, the seals and the
 * contents: "PASS memexec" or "FAIL memexec: why". */
#include "workload.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

static char head[64]; /* the program's first bytes, as the mappings must show them */
static const char data[] = "sealed bytes";
static char *shared_map, *private_map, *sealed_map;
static const int sealed_seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE;
static const int frozen_seals = F_SEAL_WRITE | F_SEAL_SEAL;
static unsigned tick;

static int make(const char *name, unsigned flags, const void *bytes, size_t len, int at)
{
	int fd = (int)syscall(SYS_memfd_create, name, flags);
	if (fd < 0)
		wl_die("memfd_create");
	if (bytes && write(fd, bytes, len) != (ssize_t)len)
		wl_die("write memfd");
	if (dup2(fd, at) < 0)
		wl_die("dup2");
	close(fd);
	return at;
}

static int mode_is(int fd, int mode)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != mode)
		return wl_fail("fd %d: flags %#x, access mode %d wanted", fd, fl, mode);
	return 0;
}

static int check(void)
{
	if (mode_is(20, O_RDWR) || mode_is(21, O_RDONLY) || mode_is(22, O_RDWR) || mode_is(23, O_RDWR))
		return -1;
	if (memcmp(shared_map, head, sizeof(head)) || memcmp(private_map, head, sizeof(head)))
		return wl_fail("the program's mappings do not hold it");
	pid_t pid = fork();
	if (pid == 0) {
		char *argv[] = { "memexec", "exit42", NULL }, *envp[] = { NULL };
		syscall(SYS_execveat, 20, "", argv, envp, AT_EMPTY_PATH);
		_exit(100 + errno);
	}
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return wl_fail("fork/waitpid: %s", strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 42)
		return wl_fail("execveat of the memfd: status %#x (%s)", st,
			       WIFEXITED(st) && WEXITSTATUS(st) > 100 ? strerror(WEXITSTATUS(st) - 100) : "not 42");
	int s = fcntl(22, F_GET_SEALS);
	if (s != sealed_seals)
		return wl_fail("fd 22: seals %#x, want %#x", s, sealed_seals);
	s = fcntl(23, F_GET_SEALS);
	if (s != frozen_seals)
		return wl_fail("fd 23: seals %#x, want %#x", s, frozen_seals);
	/* the mapping made before the seal writes on; the fd may not */
	tick++;
	memcpy(sealed_map + 100, &tick, sizeof(tick));
	unsigned back = 0;
	if (pread(22, &back, sizeof(back), 100) != sizeof(back) || back != tick)
		return wl_fail("fd 22 reads %u at 100, the mapping wrote %u", back, tick);
	if (pwrite(22, "x", 1, 0) != -1 || errno != EPERM)
		return wl_fail("write to fd 22 under F_SEAL_FUTURE_WRITE: not EPERM (%s)", strerror(errno));
	if (pwrite(23, "x", 1, 0) != -1 || errno != EPERM)
		return wl_fail("write to fd 23 under F_SEAL_WRITE: not EPERM (%s)", strerror(errno));
	if (fcntl(23, F_ADD_SEALS, F_SEAL_SHRINK) != -1 || errno != EPERM)
		return wl_fail("a seal added to fd 23 under F_SEAL_SEAL: not EPERM (%s)", strerror(errno));
	char buf[sizeof(data)];
	if (pread(22, buf, sizeof(data) - 1, 0) != sizeof(data) - 1 || memcmp(buf, data, sizeof(data) - 1) ||
	    pread(23, buf, sizeof(data) - 1, 0) != sizeof(data) - 1 || memcmp(buf, data, sizeof(data) - 1))
		return wl_fail("the sealed memfds lost their bytes");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "exit42") == 0)
		_exit(42);
	wl_init(argc, argv);
	wl_install_check_handler();
	make("wl-program", 0, NULL, 0, 20);
	int exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (exe < 0)
		wl_die("open /proc/self/exe");
	char buf[65536];
	for (ssize_t n; (n = read(exe, buf, sizeof(buf))) != 0;)
		if (n < 0 || write(20, buf, (size_t)n) != n)
			wl_die("copy the program");
	close(exe);
	if (pread(20, head, sizeof(head), 0) != sizeof(head))
		wl_die("read the copy");
	if (fchmod(20, 0755) < 0)
		wl_die("fchmod");
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", 20);
	int ro = open(path, O_RDONLY);
	if (ro < 0 || dup2(ro, 21) < 0)
		wl_die("open read-only");
	close(ro);
	shared_map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 20, 0);
	private_map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, 21, 0);
	make("wl-sealed", MFD_ALLOW_SEALING, data, sizeof(data) - 1, 22);
	if (ftruncate(22, 4096) < 0)
		wl_die("ftruncate");
	sealed_map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, 22, 0);
	if (shared_map == MAP_FAILED || private_map == MAP_FAILED || sealed_map == MAP_FAILED)
		wl_die("mmap");
	if (fcntl(22, F_ADD_SEALS, sealed_seals) < 0)
		wl_die("F_ADD_SEALS 22");
	make("wl-frozen", MFD_ALLOW_SEALING, data, sizeof(data) - 1, 23);
	if (fcntl(23, F_ADD_SEALS, frozen_seals) < 0)
		wl_die("F_ADD_SEALS 23");
	wl_ready("program=20");
	wl_serve_checks("memexec", check);
}
