/* The time namespace of a restored task (criu does the same with timens-0.img):
 * run by the clone3 child of restore.c, which shares Node's memory, so only raw
 * syscalls and no libc. */
#include "restore.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static long stage_err(const char **stage, const char *what, long r)
{
	*stage = what;
	return r;
}

/* Unsigned decimal into buf (no libc in the child); returns the length. */
static int fmt_u64(char *buf, uint64_t v)
{
	char tmp[24];
	int n = 0, len = 0;
	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	while (n > 0)
		buf[len++] = tmp[--n];
	return len;
}

static int fmt_i64(char *buf, int64_t v)
{
	if (v >= 0)
		return fmt_u64(buf, (uint64_t)v);
	buf[0] = '-';
	return 1 + fmt_u64(buf + 1, (uint64_t)0 - (uint64_t)v);
}

/* "monotonic SEC NSEC" for an offset in nanoseconds (NSEC within 0..1e9-1). */
static int fmt_offset(char *buf, const char *clock, int64_t off_ns)
{
	int64_t sec = off_ns / 1000000000, nsec = off_ns % 1000000000;
	if (nsec < 0) {
		nsec += 1000000000;
		sec--;
	}
	int n = 0;
	while (*clock)
		buf[n++] = *clock++;
	buf[n++] = ' ';
	n += fmt_i64(buf + n, sec);
	buf[n++] = ' ';
	n += fmt_i64(buf + n, nsec);
	buf[n++] = '\n';
	return n;
}

/* The offsets of the clock on the line starting with `name` in
 * /proc/self/timens_offsets ("monotonic  -2586  0"), in nanoseconds. */
static int64_t parse_offset(const char *text, const char *name)
{
	for (const char *line = text; *line;) {
		const char *a = line, *b = name;
		while (*b && *a == *b) {
			a++;
			b++;
		}
		if (!*b) {
			int64_t v[2] = { 0, 0 };
			for (int i = 0; i < 2; i++) {
				while (*a == ' ')
					a++;
				bool neg = *a == '-';
				if (neg)
					a++;
				while (*a >= '0' && *a <= '9')
					v[i] = v[i] * 10 + (*a++ - '0');
				if (neg)
					v[i] = -v[i];
			}
			return v[0] * 1000000000 + v[1];
		}
		while (*line && *line != '\n')
			line++;
		if (*line)
			line++;
	}
	return 0;
}

static int64_t clock_ns(int clock)
{
	struct timespec ts = { 0, 0 };
	restore_raw6(SYS_clock_gettime, clock, (long)&ts, 0, 0, 0, 0);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

long restore_enter_timens(int64_t mono_ns, int64_t boot_ns, const char **stage)
{
	long r = restore_raw6(SYS_unshare, CLONE_NEWTIME, 0, 0, 0, 0, 0);
	if (r < 0)
		return stage_err(stage, "unshare(CLONE_NEWTIME)", r);
	long fd = restore_raw6(SYS_openat, AT_FDCWD, (long)"/proc/self/timens_offsets", O_RDONLY | O_CLOEXEC, 0, 0, 0);
	if (fd < 0)
		return stage_err(stage, "open /proc/self/timens_offsets", fd);
	char text[256];
	long n = restore_raw6(SYS_read, fd, (long)text, sizeof(text) - 1, 0, 0, 0);
	restore_raw6(SYS_close, fd, 0, 0, 0, 0, 0);
	if (n < 0)
		return stage_err(stage, "read /proc/self/timens_offsets", n);
	text[n] = 0;
	int64_t prev_mono = parse_offset(text, "monotonic"), prev_boot = parse_offset(text, "boottime");
	char out[128];
	int len = fmt_offset(out, "monotonic", mono_ns - clock_ns(CLOCK_MONOTONIC) + prev_mono);
	len += fmt_offset(out + len, "boottime", boot_ns - clock_ns(CLOCK_BOOTTIME) + prev_boot);
	/* The kernel takes the offsets as one write at file position 0: a fresh open. */
	fd = restore_raw6(SYS_openat, AT_FDCWD, (long)"/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC, 0, 0, 0);
	if (fd < 0)
		return stage_err(stage, "open /proc/self/timens_offsets for writing", fd);
	r = restore_raw6(SYS_write, fd, (long)out, len, 0, 0, 0);
	restore_raw6(SYS_close, fd, 0, 0, 0, 0, 0);
	if (r != len)
		return stage_err(stage, "write /proc/self/timens_offsets", r < 0 ? r : -EIO);
	return 0;
}
