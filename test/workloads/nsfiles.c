/* Namespace files held open (criu's zdtm proc-self): the task opens /proc/self/ns/KIND of
 * every kind of namespace, ns/pid_for_children, and ns/net once more with O_PATH. On
 * SIGUSR1 each must still name the namespace of that kind the task is in now (after a
 * restore: the namespaces it was restored in, a new time namespace among them), be a
 * namespace file of that kind to the kernel (NS_GET_NSTYPE), and keep its flags. Then
 * "PASS nsfiles=N".
 * argv[2] "foreign": it also holds a uts namespace file of a namespace no process is in
 * (a child made it with unshare and exited), which a dump must refuse (criu refuses it too);
 * the ready line says fd=N of it. */
#define _GNU_SOURCE
#include "workload.h"

#include <linux/nsfs.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>

struct nsfile {
	const char *name; /* under /proc/self/ns */
	int cflag;
	int flags;
	int fd;
};

static struct nsfile files[] = {
	{ "net", CLONE_NEWNET, O_RDONLY, -1 },
	{ "uts", CLONE_NEWUTS, O_RDONLY, -1 },
	{ "ipc", CLONE_NEWIPC, O_RDONLY, -1 },
	{ "pid", CLONE_NEWPID, O_RDONLY, -1 },
	{ "user", CLONE_NEWUSER, O_RDONLY, -1 },
	{ "mnt", CLONE_NEWNS, O_RDONLY, -1 },
	{ "cgroup", CLONE_NEWCGROUP, O_RDONLY, -1 },
	{ "time", CLONE_NEWTIME, O_RDONLY, -1 },
	{ "pid_for_children", CLONE_NEWPID, O_RDONLY, -1 },
	{ "net", CLONE_NEWNET, O_PATH, -1 },
};
#define NFILES ((int)(sizeof(files) / sizeof(files[0])))

static int check(void)
{
	for (int i = 0; i < NFILES; i++) {
		struct nsfile *f = &files[i];
		char path[64], want[64], have[64];
		snprintf(path, sizeof(path), "/proc/self/ns/%s", f->name);
		ssize_t n = readlink(path, want, sizeof(want) - 1);
		if (n < 0)
			return wl_fail("readlink %s: %s", path, strerror(errno));
		want[n] = 0;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", f->fd);
		n = readlink(path, have, sizeof(have) - 1);
		if (n < 0)
			return wl_fail("fd %d (%s): readlink: %s", f->fd, f->name, strerror(errno));
		have[n] = 0;
		if (strcmp(want, have) != 0)
			return wl_fail("fd %d is %s, /proc/self/ns/%s is %s", f->fd, have, f->name, want);
		int fl = fcntl(f->fd, F_GETFL);
		if (fl < 0 || (fl & O_PATH) != (f->flags & O_PATH) || (fl & O_ACCMODE) != (f->flags & O_ACCMODE))
			return wl_fail("fd %d (%s): flags 0%o, want 0%o", f->fd, f->name, fl, f->flags);
		/* an O_PATH fd takes no ioctl */
		if (!(f->flags & O_PATH)) {
			int type = ioctl(f->fd, NS_GET_NSTYPE);
			if (type != f->cflag)
				return wl_fail("fd %d (%s): NS_GET_NSTYPE says 0x%x (%s), want 0x%x", f->fd, f->name,
					       type, type < 0 ? strerror(errno) : "", f->cflag);
		}
	}
	return 0;
}

/* A uts namespace file of a namespace only a child was in; the child is gone. */
static int foreign_uts(void)
{
	int p[2];
	if (pipe(p) < 0)
		wl_die("pipe");
	pid_t child = fork();
	if (child < 0)
		wl_die("fork");
	if (child == 0) {
		char c = unshare(CLONE_NEWUTS) == 0 ? 'y' : 'n';
		if (write(p[1], &c, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	char c = 0;
	if (read(p[0], &c, 1) != 1 || c != 'y')
		wl_die("unshare(CLONE_NEWUTS) in the child");
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/uts", child);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		wl_die("open the child's ns/uts");
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	close(p[0]);
	close(p[1]);
	return fd;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	for (int i = 0; i < NFILES; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/ns/%s", files[i].name);
		files[i].fd = open(path, files[i].flags);
		if (files[i].fd < 0)
			wl_die(path);
	}
	int foreign = argc > 2 && strcmp(argv[2], "foreign") == 0 ? foreign_uts() : -1;
	if (foreign >= 0)
		wl_ready("fd=%d", foreign);
	else
		wl_ready("");
	for (;;) {
		wl_wait_check();
		if (check() < 0)
			wl_result("FAIL %s", wl_failure);
		else
			wl_result("PASS nsfiles=%d", NFILES);
	}
}
