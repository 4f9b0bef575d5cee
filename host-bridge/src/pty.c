/* Unix98 pty pairs made inside a dumped tree (criu's tty.c): a master opened
 * again at its old index, its modes set back, and the data queued in either
 * end read at dump and put back on restore.
 *
 * Queued data is read and put back so that the line discipline sees it once:
 * reading clears ICANON for the read (a partial line is data too, and a
 * canonical read leaves it behind, so a write-back would go after it), and
 * putting back goes through TIOCSTI into the end's own read queue with echo,
 * signals, erase/kill/eof and the input translations off for that moment.
 * criu writes into the peer instead, which runs the peer's output processing
 * (ONLCR doubles a CR) and echoes the input a second time; a pty write is also
 * only queued for a worker, so its termios could not be put back safely after
 * it. TIOCSTI runs the line discipline synchronously. It needs CAP_SYS_ADMIN
 * (dev.tty.legacy_tiocsti aside): without it ttyInject says so and the caller
 * writes into the peer, as criu. <asm/termbits.h> gives the kernel's termios. */
#include "bridge.h"

#include <asm/termbits.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Opens ptmx at `path` until the kernel hands out index `want`: devpts gives the
 * lowest free index, so every lower free one is held open meanwhile and closed
 * after. Returns {fd, got}: fd -1 when `want` is taken (got is what came instead). */
static napi_value ptmx_open(napi_env env, napi_callback_info info)
{
	const char *fn = "ptmxOpen";
	napi_value argv[3], r;
	int32_t flags, want;
	char *path = NULL;
	if (!bridge_get_args(env, info, 3, argv, fn) ||
	    !bridge_arg_string(env, argv[0], &path, fn, "path must be a string"))
		return NULL;
	if (!bridge_arg_int32(env, argv[1], &flags, fn, "flags must be an int32") ||
	    !bridge_arg_int32(env, argv[2], &want, fn, "index must be an int32") || want < 0) {
		free(path);
		return want < 0 ? bridge_throw_arg(env, fn, "index must be >= 0") : NULL;
	}
	int *held = malloc(sizeof(int) * ((size_t)want + 1));
	if (!held) {
		free(path);
		return bridge_throw_errno(env, "malloc", ENOMEM, 0, NULL);
	}
	int n = 0, fd = -1, got = -1, err = 0;
	const char *failed = NULL;
	while (n <= want) {
		int f = open(path, flags | O_NOCTTY | O_CLOEXEC);
		if (f < 0) {
			err = errno;
			failed = "open";
			break;
		}
		if (ioctl(f, TIOCGPTN, &got) < 0) {
			err = errno;
			failed = "ioctl(TIOCGPTN)";
			close(f);
			break;
		}
		if (got == want) {
			fd = f;
			break;
		}
		held[n++] = f;
		if (got > want)
			break;
	}
	for (int i = 0; i < n; i++)
		close(held[i]);
	free(held);
	if (failed) {
		napi_value e = bridge_throw_errno(env, failed, err, 0, path);
		free(path);
		return e;
	}
	free(path);
	napi_create_object(env, &r);
	bridge_set_i32(env, r, "fd", fd);
	bridge_set_i32(env, r, "got", got);
	return r;
}

/* ttySetModes(fd, {locked?, packetMode?, exclusive?}): TIOCSPTLCK, TIOCPKT,
 * TIOCEXCL/TIOCNXCL, each when given. */
static napi_value tty_set_modes(napi_env env, napi_callback_info info)
{
	const char *fn = "ttySetModes";
	napi_value argv[2], v;
	int32_t fd;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32"))
		return NULL;
	/* the exclusive mode has no argument: TIOCEXCL sets it, TIOCNXCL clears it */
	static const struct {
		const char *key, *name;
		unsigned long req;
	} modes[] = {
		{ "locked", "ioctl(TIOCSPTLCK)", TIOCSPTLCK },
		{ "packetMode", "ioctl(TIOCPKT)", TIOCPKT },
		{ "exclusive", "ioctl(TIOCEXCL)", TIOCEXCL },
	};
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		bool on;
		if (!bridge_opt_prop(env, argv[1], modes[i].key, &v))
			continue;
		if (napi_get_value_bool(env, v, &on) != napi_ok)
			return bridge_throw_arg(env, fn, "modes must be booleans");
		int arg = on ? 1 : 0, ret;
		if (modes[i].req == TIOCEXCL)
			ret = ioctl(fd, on ? TIOCEXCL : TIOCNXCL);
		else
			ret = ioctl(fd, modes[i].req, &arg);
		if (ret < 0)
			return bridge_throw_errno(env, modes[i].name, errno, 0, NULL);
	}
	return NULL;
}

/* ttyDrain(fd, max): the bytes queued for reading on a terminal, at most `max`.
 * The description's flags and the termios are as before afterwards. A master
 * in packet mode prefixes each read with a status byte: data packets (0) lose
 * it, status-only packets are dropped (their event is gone once read). */
static napi_value tty_drain(napi_env env, napi_callback_info info)
{
	const char *fn = "ttyDrain";
	napi_value argv[2], out;
	int32_t fd;
	uint32_t max;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_uint32(env, argv[1], &max, fn, "max must be a uint32"))
		return NULL;
	struct termios t, raw;
	int fl = fcntl(fd, F_GETFL), pkt = 0;
	if (fl < 0)
		return bridge_throw_errno(env, "fcntl(F_GETFL)", errno, 0, NULL);
	if (ioctl(fd, TCGETS, &t) < 0)
		return bridge_throw_errno(env, "ioctl(TCGETS)", errno, 0, NULL);
	if (ioctl(fd, TIOCGPKT, &pkt) < 0)
		pkt = 0;
	raw = t;
	raw.c_lflag &= ~ICANON;
	if ((t.c_lflag & ICANON) && ioctl(fd, TCSETS, &raw) < 0)
		return bridge_throw_errno(env, "ioctl(TCSETS)", errno, 0, NULL);
	uint8_t *buf = malloc((size_t)max + 1);
	size_t len = 0;
	int err = 0;
	const char *failed = NULL;
	if (!buf) {
		err = ENOMEM;
		failed = "malloc";
	} else if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		err = errno;
		failed = "fcntl(F_SETFL)";
	}
	while (!failed && len < max) {
		/* one byte more for a packet's status byte */
		ssize_t n = read(fd, buf + len, max - len + (pkt ? 1 : 0));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EIO) {
			err = errno;
			failed = "read";
		}
		if (n <= 0)
			break;
		if (pkt) {
			if (buf[len] != 0)
				continue;
			memmove(buf + len, buf + len + 1, (size_t)n - 1);
			n--;
		}
		len += (size_t)n;
	}
	if (fcntl(fd, F_SETFL, fl) < 0 && !failed) {
		err = errno;
		failed = "fcntl(F_SETFL)";
	}
	if ((t.c_lflag & ICANON) && ioctl(fd, TCSETS, &t) < 0 && !failed) {
		err = errno;
		failed = "ioctl(TCSETS)";
	}
	if (failed) {
		free(buf);
		return bridge_throw_errno(env, failed, err, 0, NULL);
	}
	napi_status s = napi_create_buffer_copy(env, len, len ? (void *)buf : (void *)"", NULL, &out);
	free(buf);
	if (s != napi_ok)
		return bridge_throw_errno(env, "napi_create_buffer_copy", ENOMEM, 0, NULL);
	return out;
}

/* ttyInject(fd, data): puts `data` into the terminal's own read queue (TIOCSTI),
 * line discipline transparent meanwhile. True once done; false when TIOCSTI is
 * refused (EPERM, or EIO without legacy TIOCSTI) before any byte went in. */
static napi_value tty_inject(napi_env env, napi_callback_info info)
{
	const char *fn = "ttyInject";
	napi_value argv[2], r;
	int32_t fd;
	uint8_t *data;
	size_t len;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32") ||
	    !bridge_arg_bytes(env, argv[1], &data, &len, fn, "data must be bytes"))
		return NULL;
	struct termios t, quiet, lt, unlocked;
	if (ioctl(fd, TCGETS, &t) < 0)
		return bridge_throw_errno(env, "ioctl(TCGETS)", errno, 0, NULL);
	/* Locked termios bits would keep echo or ICRNL on: unlocked for the moment. */
	bool relock = ioctl(fd, TIOCGLCKTRMIOS, &lt) == 0 && (lt.c_iflag || lt.c_lflag || lt.c_oflag || lt.c_cflag);
	memset(&unlocked, 0, sizeof(unlocked));
	if (relock && ioctl(fd, TIOCSLCKTRMIOS, &unlocked) < 0)
		relock = false;
	quiet = t;
	/* IXON stays: a change of it is a packet-mode event for the master's reader */
	quiet.c_iflag &= ~(ISTRIP | INLCR | IGNCR | ICRNL | IUCLC | PARMRK | INPCK);
	quiet.c_lflag &= ~(ISIG | ECHO | ECHOE | ECHOK | ECHONL | ECHOCTL | ECHOPRT | ECHOKE);
	/* 0 is _POSIX_VDISABLE; VEOL and VEOL2 still end lines, as they did */
	static const int edits[] = { VERASE, VKILL, VWERASE, VREPRINT, VLNEXT, VEOF, VDISCARD };
	if (t.c_lflag & ICANON)
		for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++)
			quiet.c_cc[edits[i]] = 0;
	int err = 0;
	const char *failed = NULL;
	bool done = true;
	if (ioctl(fd, TCSETS, &quiet) < 0) {
		err = errno;
		failed = "ioctl(TCSETS)";
	}
	for (size_t i = 0; !failed && i < len; i++) {
		if (ioctl(fd, TIOCSTI, &data[i]) == 0)
			continue;
		if (i == 0 && (errno == EPERM || errno == EIO)) {
			done = false;
			break;
		}
		err = errno;
		failed = "ioctl(TIOCSTI)";
	}
	if (ioctl(fd, TCSETS, &t) < 0 && !failed) {
		err = errno;
		failed = "ioctl(TCSETS)";
	}
	if (relock && ioctl(fd, TIOCSLCKTRMIOS, &lt) < 0 && !failed) {
		err = errno;
		failed = "ioctl(TIOCSLCKTRMIOS)";
	}
	if (failed)
		return bridge_throw_errno(env, failed, err, 0, NULL);
	napi_get_boolean(env, done, &r);
	return r;
}

void bridge_init_pty(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "ptmxOpen", ptmx_open },
		{ "ttySetModes", tty_set_modes },
		{ "ttyDrain", tty_drain },
		{ "ttyInject", tty_inject },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
