/* spawnDetached: start a program that is not a child of Node, under the
 * tscriu_reaper subreaper (src/reaper.c says why), and return its pid. */
#include "bridge.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reaper.h"

extern char **environ;

/* The reaper is built next to the addon (build/Release/); TSCRIU_REAPER
 * overrides that for an installed layout we do not know of. */
static int reaper_path(char *out, size_t len)
{
	const char *env = getenv("TSCRIU_REAPER");
	if (env && *env) {
		snprintf(out, len, "%s", env);
		return 0;
	}
	Dl_info dl;
	if (!dladdr((void *)reaper_path, &dl) || !dl.dli_fname)
		return -1;
	snprintf(out, len, "%s", dl.dli_fname);
	char *slash = strrchr(out, '/');
	size_t dir = slash ? (size_t)(slash - out) + 1 : 0;
	snprintf(out + dir, len - dir, "%s", REAPER_NAME);
	return 0;
}

static void free_strv(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

/* A JS array of strings as a NULL-terminated vector; reserve extra leading
 * slots for the caller. */
static char **get_strv(napi_env env, napi_value arr, size_t lead, const char *fn, const char *what, bool nonempty)
{
	bool is = false;
	uint32_t n = 0;
	if (napi_is_array(env, arr, &is) != napi_ok || !is || napi_get_array_length(env, arr, &n) != napi_ok ||
	    (nonempty && n == 0)) {
		bridge_throw_arg(env, fn, what);
		return NULL;
	}
	char **v = calloc(lead + n + 1, sizeof(char *));
	if (!v) {
		bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++) {
		napi_value e;
		napi_get_element(env, arr, i, &e);
		if (!bridge_arg_string(env, e, &v[lead + i], fn, what)) {
			/* free what was filled; leading slots are still NULL */
			for (uint32_t j = 0; j < i; j++)
				free(v[lead + j]);
			free(v);
			return NULL;
		}
	}
	return v;
}

/* options.fds: open fds of this process, each passed to the program. */
static bool get_fds(napi_env env, napi_value arr, int *fds, int *n, const char *fn)
{
	bool is = false;
	uint32_t len = 0;
	if (napi_is_array(env, arr, &is) != napi_ok || !is || napi_get_array_length(env, arr, &len) != napi_ok ||
	    len > REAPER_MAX_FDS) {
		bridge_throw_arg(env, fn, "options.fds must be an array of at most 64 fds");
		return false;
	}
	for (uint32_t i = 0; i < len; i++) {
		napi_value e;
		int32_t fd = -1;
		if (napi_get_element(env, arr, i, &e) != napi_ok || napi_get_value_int32(env, e, &fd) != napi_ok ||
		    fd < 0 || fcntl(fd, F_GETFD) < 0) {
			bridge_throw_arg(env, fn, "options.fds must hold open fds");
			return false;
		}
		fds[i] = fd;
	}
	*n = (int)len;
	return true;
}

static napi_value spawn_detached(napi_env env, napi_callback_info info)
{
	const char *fn = "spawnDetached";
	napi_value argv[2];
	if (!bridge_get_args_range(env, info, 1, 2, argv, NULL, fn))
		return NULL;
	char **args = NULL, **envv = NULL, *cwd = NULL, *out = NULL;
	bool kill_with_parent = false;
	int pass[REAPER_MAX_FDS], npass = 0;
	napi_value result = NULL, v;

	/* Six leading slots: reaper, status fd, flags, node pid, stdout, cwd. */
	args = get_strv(env, argv[0], 6, fn, "argv must be a non-empty array of strings", true);
	if (!args)
		return NULL;
	if (!bridge_is_nullish(env, argv[1])) {
		napi_valuetype t;
		if (napi_typeof(env, argv[1], &t) != napi_ok || t != napi_object) {
			bridge_throw_arg(env, fn, "options must be an object");
			goto out;
		}
		if (bridge_opt_prop(env, argv[1], "env", &v) &&
		    !(envv = get_strv(env, v, 0, fn, "options.env must be an array of \"NAME=value\" strings", false)))
			goto out;
		if (bridge_opt_prop(env, argv[1], "cwd", &v) &&
		    !bridge_arg_string(env, v, &cwd, fn, "options.cwd must be a string"))
			goto out;
		if (bridge_opt_prop(env, argv[1], "stdout", &v) &&
		    !bridge_arg_string(env, v, &out, fn, "options.stdout must be a string (a file path)"))
			goto out;
		if (bridge_opt_prop(env, argv[1], "killWithParent", &v)) {
			napi_valuetype bt;
			if (napi_typeof(env, v, &bt) != napi_ok || bt != napi_boolean) {
				bridge_throw_arg(env, fn, "options.killWithParent must be a boolean");
				goto out;
			}
			napi_get_value_bool(env, v, &kill_with_parent);
		}
		if (bridge_opt_prop(env, argv[1], "fds", &v) && !get_fds(env, v, pass, &npass, fn))
			goto out;
	}

	char reaper[4096], node_pid[16], flags[16];
	if (reaper_path(reaper, sizeof(reaper)) < 0) {
		bridge_throw_errno(env, "dladdr: cannot locate " REAPER_NAME, ENOENT, 0, NULL);
		goto out;
	}
	if (access(reaper, X_OK) < 0) {
		bridge_throw_errno(env, "spawnDetached: the reaper is not built", errno, 0, reaper);
		goto out;
	}
	snprintf(node_pid, sizeof(node_pid), "%d", (int)getpid());
	args[0] = reaper;
	args[1] = "3";
	snprintf(flags, sizeof(flags), "%s%d", kill_with_parent ? "k" : "", npass);
	args[2] = flags;
	args[3] = node_pid;
	args[4] = out ? out : "";
	args[5] = cwd ? cwd : "";

	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		bridge_throw_errno(env, "pipe2", errno, 0, NULL);
		goto clear;
	}
	if (pfd[1] <= 3) {
		/* dup2(3, 3) in the file actions would keep O_CLOEXEC on some libcs. */
		int w = fcntl(pfd[1], F_DUPFD_CLOEXEC, 10);
		close(pfd[1]);
		pfd[1] = w;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t all, none;
	sigfillset(&all);
	sigemptyset(&none);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 3);
	/* The fds passed become 4, 5, ... From copies above those numbers: a source
	 * among them would be overwritten before its own turn. */
	int copies[REAPER_MAX_FDS], ncopies = 0;
	for (int i = 0; i < npass && pfd[1] >= 0; i++) {
		int c = fcntl(pass[i], F_DUPFD_CLOEXEC, 4 + npass);
		if (c < 0) {
			close(pfd[1]);
			pfd[1] = -1;
			break;
		}
		copies[ncopies++] = c;
		posix_spawn_file_actions_adddup2(&fa, c, 4 + i);
	}
	posix_spawnattr_init(&attr);
	/* Node ignores SIGPIPE and may block signals: the workload gets defaults. */
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSID);
	pid_t first;
	int err = pfd[1] < 0 ? EMFILE : posix_spawn(&first, reaper, &fa, &attr, args, envv ? envv : environ);
	for (int i = 0; i < ncopies; i++)
		close(copies[i]);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (err) {
		close(pfd[0]);
		bridge_throw_errno(env, "posix_spawn", err, 0, reaper);
		goto clear;
	}
	int st;
	while (waitpid(first, &st, 0) < 0 && errno == EINTR)
		;

	/* Read records to EOF: EOF means the workload exec'd (or died trying). */
	struct reaper_record rec;
	int pid = 0, fail_errno = 0;
	char stage[sizeof(rec.stage) + 1] = "";
	for (;;) {
		ssize_t n = read(pfd[0], &rec, sizeof(rec));
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(rec))
			break;
		if (rec.tag == REAPER_PID)
			pid = rec.value;
		else if (rec.tag == REAPER_ERROR && !fail_errno) {
			fail_errno = rec.value;
			memcpy(stage, rec.stage, sizeof(rec.stage));
			stage[sizeof(rec.stage)] = 0;
		}
	}
	close(pfd[0]);
	if (fail_errno) {
		char what[96];
		snprintf(what, sizeof(what), "spawnDetached: %s", stage);
		const char *path = strcmp(stage, "open stdout") == 0 ? args[4]
				   : strcmp(stage, "chdir") == 0     ? args[5]
								     : args[6];
		bridge_throw_errno(env, what, fail_errno, pid, path);
		goto clear;
	}
	if (pid <= 0) {
		bridge_throw_errno(env, "spawnDetached: the reaper reported no pid", EIO, 0, reaper);
		goto clear;
	}
	napi_create_int32(env, pid, &result);
clear:
	for (int i = 0; i < 6; i++)
		args[i] = NULL; /* not ours to free */
out:
	if (args) {
		for (size_t i = 6; args[i]; i++)
			free(args[i]);
		free(args);
	}
	free_strv(envv);
	free(cwd);
	free(out);
	return result;
}

void bridge_init_spawn(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "spawnDetached", spawn_detached },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
