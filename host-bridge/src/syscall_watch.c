/* A count of chosen syscalls made by threads, and by the threads and processes they start
 * from then on: a perf counter on a raw_syscalls tracepoint (sys_enter or sys_exit) of
 * each thread, filtered by syscall number (the kernel's tracepoint filter, "id == N ||
 * ..."), inherited with its filter by its children. The dump reads a task's smaps ahead
 * of its freeze and keeps that read when the task made none of the calls that change its
 * mappings since (dump/smaps-ahead.ts). */
#include "bridge.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The most syscall numbers a filter names, and the largest number (each term "id == NNNNN || "
 * then takes at most 15 bytes). */
#define MAX_NRS 64
#define MAX_NR	0xffff

static int open_counter(int tid, uint64_t tracepoint, const char *filter)
{
	struct perf_event_attr a;
	memset(&a, 0, sizeof(a));
	a.type = PERF_TYPE_TRACEPOINT;
	a.size = sizeof(a);
	a.config = tracepoint;
	a.inherit = 1;
	/* Enabled once filtered: an enabled counter counts every call of the thread until its
	 * filter is set, and a call that ended in that window (a sleeping task's nanosleep,
	 * on a busy machine) read as a mapping call. */
	a.disabled = 1;
	int fd = (int)syscall(SYS_perf_event_open, &a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0)
		return -1;
	if (ioctl(fd, PERF_EVENT_IOC_SET_FILTER, filter) < 0 || ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* syscallWatch(tids, nrs, tracepoint, fds): a counter on each thread of `tids`
 * (Int32Array) counting the syscalls numbered in `nrs` (Int32Array), `tracepoint` the id
 * of raw_syscalls:sys_enter or sys_exit; fds[i] (Int32Array, as long as tids) gets thread i's, or -1
 * for a thread gone (ESRCH). On any other failure the counters opened are closed and it
 * throws, naming the thread. */
static napi_value syscall_watch(napi_env env, napi_callback_info info)
{
	const char *fn = "syscallWatch";
	napi_value argv[4];
	uint8_t *tids_b, *nrs_b, *fds_b;
	size_t tids_len, nrs_len, fds_len;
	uint32_t tracepoint;
	if (!bridge_get_args(env, info, 4, argv, fn) ||
	    !bridge_arg_bytes(env, argv[0], &tids_b, &tids_len, fn, "tids must be an Int32Array") ||
	    !bridge_arg_bytes(env, argv[1], &nrs_b, &nrs_len, fn, "nrs must be an Int32Array") ||
	    !bridge_arg_uint32(env, argv[2], &tracepoint, fn, "tracepoint must be a uint32") ||
	    !bridge_arg_bytes(env, argv[3], &fds_b, &fds_len, fn, "fds must be an Int32Array"))
		return NULL;
	size_t n = tids_len / 4, k = nrs_len / 4;
	if (tids_len % 4 || nrs_len % 4 || fds_len != tids_len)
		return bridge_throw_arg(env, fn, "tids and fds must be Int32Arrays of the same length");
	if (k == 0 || k > MAX_NRS)
		return bridge_throw_arg(env, fn, "nrs must name 1 to 64 syscalls");
	char filter[MAX_NRS * 16];
	size_t at = 0;
	for (size_t i = 0; i < k; i++) {
		int32_t nr;
		memcpy(&nr, nrs_b + 4 * i, 4);
		if (nr < 0 || nr > MAX_NR)
			return bridge_throw_arg(env, fn, "a syscall number must be 0 to 65535");
		at += (size_t)snprintf(filter + at, sizeof(filter) - at, "%sid == %d", i ? " || " : "", nr);
	}
	int32_t *fds = (int32_t *)(void *)fds_b;
	for (size_t i = 0; i < n; i++)
		fds[i] = -1;
	for (size_t i = 0; i < n; i++) {
		int32_t tid;
		memcpy(&tid, tids_b + 4 * i, 4);
		int fd = open_counter(tid, tracepoint, filter);
		if (fd >= 0) {
			fds[i] = fd;
			continue;
		}
		if (errno == ESRCH)
			continue;
		int e = errno;
		for (size_t j = 0; j < i; j++)
			if (fds[j] >= 0)
				close(fds[j]);
		return bridge_throw_errno(env, "perf_event_open(a raw_syscalls tracepoint)", e, tid, NULL);
	}
	return NULL;
}

/* The one argument of syscallWatchCount and syscallWatchClose: an Int32Array of fds, as
 * bytes and a count. */
static bool fds_arg(napi_env env, napi_callback_info info, const char *fn, uint8_t **fds, size_t *n)
{
	napi_value argv[1];
	size_t len;
	if (!bridge_get_args(env, info, 1, argv, fn) ||
	    !bridge_arg_bytes(env, argv[0], fds, &len, fn, "fds must be an Int32Array"))
		return false;
	if (len % 4) {
		bridge_throw_arg(env, fn, "fds must be an Int32Array");
		return false;
	}
	*n = len / 4;
	return true;
}

/* syscallWatchCount(fds): the calls the counters of `fds` (Int32Array; -1 passed over)
 * counted so far, summed (their children's included), as a number. */
static napi_value syscall_watch_count(napi_env env, napi_callback_info info)
{
	uint8_t *fds_b;
	size_t n;
	if (!fds_arg(env, info, "syscallWatchCount", &fds_b, &n))
		return NULL;
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		int32_t fd;
		memcpy(&fd, fds_b + 4 * i, 4);
		if (fd < 0)
			continue;
		uint64_t v;
		if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
			return bridge_throw_errno(env, "read(perf counter)", errno ? errno : EIO, 0, NULL);
		total += v;
	}
	napi_value r;
	napi_create_double(env, (double)total, &r);
	return r;
}

struct close_job {
	napi_async_work work;
	napi_deferred deferred;
	size_t n;
	int32_t fds[];
};

static void close_run(napi_env env, void *arg)
{
	(void)env;
	struct close_job *j = arg;
	for (size_t i = 0; i < j->n; i++)
		if (j->fds[i] >= 0)
			close(j->fds[i]);
}

static void close_done(napi_env env, napi_status status, void *arg)
{
	(void)status;
	struct close_job *j = arg;
	napi_value v;
	napi_get_undefined(env, &v);
	napi_resolve_deferred(env, j->deferred, v);
	napi_delete_async_work(env, j->work);
	free(j);
}

/* syscallWatchClose(fds): the counters of `fds` (-1 passed over) closed on libuv's thread
 * pool: the last close of a tracepoint's counters takes its probe out of the kernel's
 * code, tens of milliseconds here, which a frozen task should not wait for. */
static napi_value syscall_watch_close(napi_env env, napi_callback_info info)
{
	uint8_t *fds_b;
	size_t n;
	if (!fds_arg(env, info, "syscallWatchClose", &fds_b, &n))
		return NULL;
	struct close_job *j = calloc(1, sizeof(*j) + 4 * n);
	if (!j)
		return bridge_throw_errno(env, "calloc", ENOMEM, 0, NULL);
	j->n = n;
	memcpy(j->fds, fds_b, 4 * n);
	napi_value promise =
	    bridge_queue_job(env, "syscallWatchClose", close_run, close_done, j, &j->work, &j->deferred);
	if (!promise)
		free(j);
	return promise;
}

void bridge_init_syscall_watch(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "syscallWatch", syscall_watch },
		{ "syscallWatchCount", syscall_watch_count },
		{ "syscallWatchClose", syscall_watch_close },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
