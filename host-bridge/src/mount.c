/* A file system mounted detached (fsopen, fsconfig, fsmount): an fd of its root that no
 * mount table shows, gone once closed. tscriu reaches a cgroup hierarchy no mount of its
 * mount namespace shows (criu does the same for each hierarchy it dumps or restores), and
 * tracefs where nothing mounted it (dump/smaps-ahead.ts). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/mount.h>

#include "bridge.h"

static int fsconfig_(int fd, unsigned int cmd, const char *key, const char *value)
{
	return (int)syscall(SYS_fsconfig, fd, cmd, key, value, 0);
}

/* detachedMount(fstype, options): options comma-separated flags and name=VALUE, as in
 * /proc/self/cgroup for a cgroup hierarchy ("cpu,cpuacct", "name=systemd", "" for cgroup2).
 * Returns the mount's root fd (O_CLOEXEC). */
static napi_value detached_mount(napi_env env, napi_callback_info info)
{
	const char *fn = "detachedMount";
	napi_value argv[2];
	char *fstype = NULL, *opts = NULL;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_string(env, argv[0], &fstype, fn, "fstype must be a string"))
		return NULL;
	if (!bridge_arg_string(env, argv[1], &opts, fn, "options must be a string")) {
		free(fstype);
		return NULL;
	}
	const char *failed = "fsopen";
	int mnt = -1, err = 0;
	int fs = (int)syscall(SYS_fsopen, fstype, FSOPEN_CLOEXEC);
	if (fs < 0)
		goto out;
	for (char *save = NULL, *o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		failed = "fsconfig";
		int r = strncmp(o, "name=", 5) == 0 ? fsconfig_(fs, FSCONFIG_SET_STRING, "name", o + 5)
						    : fsconfig_(fs, FSCONFIG_SET_FLAG, o, NULL);
		if (r < 0)
			goto out;
	}
	failed = "fsconfig";
	if (fsconfig_(fs, FSCONFIG_CMD_CREATE, NULL, NULL) < 0)
		goto out;
	failed = "fsmount";
	mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0);
out:
	err = errno;
	if (fs >= 0)
		close(fs);
	free(fstype);
	free(opts);
	if (mnt < 0)
		return bridge_throw_errno(env, failed, err, 0, NULL);
	return bridge_make_i64(env, mnt);
}

void bridge_init_mount(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "detachedMount", detached_mount },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
