/* Terminals: ttyInfo reads what a dump records of one (tty-info.img), and
 * ttySetParams puts the termios, locked termios and window size back, as criu
 * does for the terminal a shell job is restored on. <asm/termbits.h> gives the
 * kernel's struct termios (NCCS 19), the layout TCGETS/TCSETS use and criu's
 * termios_entry holds, not glibc's larger one. */
#include "bridge.h"

#include <asm/termbits.h>
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

static napi_value termios_obj(napi_env env, const struct termios *t)
{
	napi_value r, cc, v;
	napi_create_object(env, &r);
	bridge_set_u32(env, r, "iflag", t->c_iflag);
	bridge_set_u32(env, r, "oflag", t->c_oflag);
	bridge_set_u32(env, r, "cflag", t->c_cflag);
	bridge_set_u32(env, r, "lflag", t->c_lflag);
	bridge_set_u32(env, r, "line", t->c_line);
	napi_create_array_with_length(env, NCCS, &cc);
	for (uint32_t i = 0; i < NCCS; i++) {
		napi_create_uint32(env, t->c_cc[i], &v);
		napi_set_element(env, cc, i, v);
	}
	napi_set_named_property(env, r, "cc", cc);
	return r;
}

/* A terminal's state: termios (TCGETS), window size, pty index, session and
 * foreground group, and the exclusive / packet / lock modes. Values the
 * terminal does not have (a pty index on a console) are -1. */
static napi_value tty_info(napi_env env, napi_callback_info info)
{
	const char *fn = "ttyInfo";
	napi_value argv[1];
	int32_t fd;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32"))
		return NULL;
	struct termios t, lt;
	struct winsize ws;
	if (ioctl(fd, TCGETS, &t) < 0)
		return bridge_throw_errno(env, "ioctl(TCGETS)", errno, 0, NULL);
	if (ioctl(fd, TIOCGLCKTRMIOS, &lt) < 0)
		return bridge_throw_errno(env, "ioctl(TIOCGLCKTRMIOS)", errno, 0, NULL);
	if (ioctl(fd, TIOCGWINSZ, &ws) < 0)
		return bridge_throw_errno(env, "ioctl(TIOCGWINSZ)", errno, 0, NULL);
	int ptn = -1, sid = -1, pgrp = -1, excl = 0, pkt = 0, lck = 0;
	if (ioctl(fd, TIOCGPTN, &ptn) < 0)
		ptn = -1;
	if (ioctl(fd, TIOCGSID, &sid) < 0)
		sid = -1;
	if (ioctl(fd, TIOCGPGRP, &pgrp) < 0)
		pgrp = -1;
	if (ioctl(fd, TIOCGEXCL, &excl) < 0)
		excl = 0;
	if (ioctl(fd, TIOCGPKT, &pkt) < 0)
		pkt = 0;
	if (ioctl(fd, TIOCGPTLCK, &lck) < 0)
		lck = 0;
	napi_value r;
	napi_create_object(env, &r);
	napi_set_named_property(env, r, "termios", termios_obj(env, &t));
	napi_set_named_property(env, r, "lockedTermios", termios_obj(env, &lt));
	bridge_set_u32(env, r, "rows", ws.ws_row);
	bridge_set_u32(env, r, "cols", ws.ws_col);
	bridge_set_u32(env, r, "xpixel", ws.ws_xpixel);
	bridge_set_u32(env, r, "ypixel", ws.ws_ypixel);
	bridge_set_i32(env, r, "ptyIndex", ptn);
	bridge_set_i32(env, r, "sid", sid);
	bridge_set_i32(env, r, "pgrp", pgrp);
	bridge_set_i32(env, r, "exclusive", excl);
	bridge_set_i32(env, r, "packetMode", pkt);
	bridge_set_i32(env, r, "locked", lck);
	return r;
}

/* One Termios object ({iflag, oflag, cflag, lflag, line, cc}) into t (zeroed first). */
static bool termios_arg(napi_env env, napi_value obj, struct termios *t, const char *fn, const char *what)
{
	memset(t, 0, sizeof(*t));
	static const char *const keys[] = { "iflag", "oflag", "cflag", "lflag", "line" };
	uint32_t v[5];
	napi_value x, cc;
	bool is_array = false;
	for (int i = 0; i < 5; i++)
		if (!bridge_opt_prop(env, obj, keys[i], &x) || napi_get_value_uint32(env, x, &v[i]) != napi_ok) {
			bridge_throw_arg(env, fn, what);
			return false;
		}
	t->c_iflag = v[0];
	t->c_oflag = v[1];
	t->c_cflag = v[2];
	t->c_lflag = v[3];
	t->c_line = (cc_t)v[4];
	uint32_t n = 0;
	if (!bridge_opt_prop(env, obj, "cc", &cc) || napi_is_array(env, cc, &is_array) != napi_ok || !is_array ||
	    napi_get_array_length(env, cc, &n) != napi_ok) {
		bridge_throw_arg(env, fn, what);
		return false;
	}
	for (uint32_t i = 0; i < n && i < NCCS; i++) {
		uint32_t c;
		if (napi_get_element(env, cc, i, &x) != napi_ok || napi_get_value_uint32(env, x, &c) != napi_ok) {
			bridge_throw_arg(env, fn, what);
			return false;
		}
		t->c_cc[i] = (cc_t)c;
	}
	return true;
}

/* ttySetParams(fd, {termios?, lockedTermios?, winsize?}): in criu's order, locked
 * termios first (they limit what TCSETS may change; setting them needs
 * CAP_SYS_ADMIN), then termios, then the window size. */
static napi_value tty_set_params(napi_env env, napi_callback_info info)
{
	const char *fn = "ttySetParams";
	napi_value argv[2], v;
	int32_t fd;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_fd(env, argv[0], &fd, fn, "fd must be a non-negative int32"))
		return NULL;
	struct termios t;
	if (bridge_opt_prop(env, argv[1], "lockedTermios", &v)) {
		if (!termios_arg(env, v, &t, fn, "params.lockedTermios must be a Termios"))
			return NULL;
		if (ioctl(fd, TIOCSLCKTRMIOS, &t) < 0)
			return bridge_throw_errno(env, "ioctl(TIOCSLCKTRMIOS)", errno, 0, NULL);
	}
	if (bridge_opt_prop(env, argv[1], "termios", &v)) {
		if (!termios_arg(env, v, &t, fn, "params.termios must be a Termios"))
			return NULL;
		if (ioctl(fd, TCSETS, &t) < 0)
			return bridge_throw_errno(env, "ioctl(TCSETS)", errno, 0, NULL);
	}
	if (bridge_opt_prop(env, argv[1], "winsize", &v)) {
		static const char *const keys[] = { "rows", "cols", "xpixel", "ypixel" };
		uint32_t w[4];
		napi_value x;
		for (int i = 0; i < 4; i++)
			if (!bridge_opt_prop(env, v, keys[i], &x) || napi_get_value_uint32(env, x, &w[i]) != napi_ok ||
			    w[i] > 0xffff)
				return bridge_throw_arg(
				    env, fn, "params.winsize must hold rows, cols, xpixel, ypixel (0..65535)");
		struct winsize ws = { (unsigned short)w[0], (unsigned short)w[1], (unsigned short)w[2],
				      (unsigned short)w[3] };
		if (ioctl(fd, TIOCSWINSZ, &ws) < 0)
			return bridge_throw_errno(env, "ioctl(TIOCSWINSZ)", errno, 0, NULL);
	}
	return NULL;
}

void bridge_init_tty(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "ttyInfo", tty_info },
		{ "ttySetParams", tty_set_params },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
