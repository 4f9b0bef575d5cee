/* writePages: page data from a pages-N.img file into the restored task.
 *
 * The pages file is mapped read-only here and process_vm_writev copies straight
 * from that mapping (the page cache) into the task: no intermediate buffer. The
 * cost that remains is the task's first-touch page faults, which happen in the
 * thread that calls process_vm_writev, so several threads fill parts of the
 * work at once (two threads restored 256 MiB 1.7x faster than one, DESIGN.md).
 * Pages the task cannot write (read-only or PROT_NONE mappings) make
 * process_vm_writev stop with EFAULT; the rest of such a range goes through
 * /proc/PID/mem, which writes with FOLL_FORCE.
 *
 * memfdCreate: a memfd for shared memory objects (memfd.img), filled here and
 * handed to the task. */
#include "restore.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h> /* memfd_create */
#include <sys/uio.h>
#include <unistd.h>

#define IOV_BATCH   1024
#define BATCH_BYTES (64ULL << 20)

struct worker {
	struct restore_job job; /* first: restore_share fills it */
	int pid;
	/* results besides the job's */
	uint64_t proc_mem_bytes;
	const char *err_step;
};

/* Writes the rest of one range through /proc/PID/mem. */
static int write_proc_mem(struct worker *w, int *memfd, const uint8_t *src, uint64_t addr, uint64_t len)
{
	if (*memfd < 0) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/mem", w->pid);
		*memfd = open(path, O_WRONLY | O_CLOEXEC);
		if (*memfd < 0) {
			w->job.err = errno == ENOENT ? ESRCH : errno;
			w->job.err_addr = addr;
			w->err_step = "open /proc/PID/mem";
			return -1;
		}
	}
	uint64_t done = 0;
	while (done < len) {
		ssize_t r = pwrite(*memfd, src + done, len - done, (off_t)(addr + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			w->job.err = r < 0 ? errno : EIO;
			w->job.err_addr = addr + done;
			w->err_step = "pwrite /proc/PID/mem";
			return -1;
		}
		done += (uint64_t)r;
	}
	w->proc_mem_bytes += len;
	return 0;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct iovec local[IOV_BATCH], remote[IOV_BATCH];
	int memfd = -1;
	size_t i = 0;
	uint64_t in_seg = 0; /* bytes of segs[i] already handled */
	while (i < w->job.nsegs && !w->job.err) {
		/* One batch: up to IOV_BATCH ranges and BATCH_BYTES bytes. */
		size_t n = 0;
		uint64_t want = 0;
		size_t j = i;
		uint64_t at = in_seg;
		while (j < w->job.nsegs && n < IOV_BATCH && want < BATCH_BYTES) {
			struct restore_seg *s = &w->job.segs[j];
			uint64_t len = s->len - at;
			if (len > BATCH_BYTES - want)
				len = BATCH_BYTES - want;
			local[n].iov_base = (void *)(w->job.base + (s->off - w->job.base_off) + at);
			local[n].iov_len = len;
			remote[n].iov_base = (void *)(uintptr_t)(s->addr + at);
			remote[n].iov_len = len;
			n++;
			want += len;
			at += len;
			if (at == s->len) {
				j++;
				at = 0;
			}
		}
		ssize_t got = process_vm_writev(w->pid, local, n, remote, n, 0);
		if (got < 0 && errno != EFAULT) {
			w->job.err = errno;
			w->job.err_addr = (uint64_t)(uintptr_t)remote[0].iov_base;
			w->err_step = "process_vm_writev";
			break;
		}
		if (got < 0)
			got = 0;
		w->job.bytes += (uint64_t)got;
		if ((uint64_t)got == want) {
			i = j;
			in_seg = at;
			continue;
		}
		/* Stopped part-way (a page it may not write): find the range, finish
		 * it through /proc/PID/mem and go on after it. */
		uint64_t left = (uint64_t)got;
		size_t k = 0;
		while (k < n && left >= remote[k].iov_len)
			left -= remote[k++].iov_len;
		uint64_t rest = remote[k].iov_len - left;
		if (write_proc_mem(w, &memfd, (const uint8_t *)local[k].iov_base + left,
				   (uint64_t)(uintptr_t)remote[k].iov_base + left, rest) < 0)
			break;
		w->job.bytes += rest;
		/* Advance (i, in_seg) past iovec k. */
		uint64_t skip = 0;
		for (size_t q = 0; q <= k; q++)
			skip += remote[q].iov_len;
		while (skip > 0) {
			uint64_t room = w->job.segs[i].len - in_seg;
			if (skip >= room) {
				skip -= room;
				i++;
				in_seg = 0;
			} else {
				in_seg += skip;
				skip = 0;
			}
		}
	}
	if (memfd >= 0)
		close(memfd);
	return NULL;
}

static napi_value write_pages(napi_env env, napi_callback_info info)
{
	const char *fn = "writePages";
	napi_value argv[4];
	int32_t pid, fd;
	if (!bridge_get_args_range(env, info, 3, 4, argv, NULL, fn) || !bridge_arg_pid(env, argv[0], &pid, fn) ||
	    !bridge_arg_fd(env, argv[1], &fd, fn, "fd must be an open file descriptor"))
		return NULL;
	struct restore_fill f;
	if (!restore_fill_open(env, fn, argv[2], argv[3], fd, false, pid, &f))
		return NULL;
	if (f.nsegs == 0) {
		napi_value res, v;
		napi_create_object(env, &res);
		napi_create_double(env, 0, &v);
		napi_set_named_property(env, res, "bytes", v);
		napi_set_named_property(env, res, "procMemBytes", v);
		return res;
	}
	struct worker w[RESTORE_MAX_THREADS];
	memset(w, 0, sizeof(w));
	uint32_t nw = restore_share(&f, w, sizeof(w[0]));
	for (uint32_t t = 0; t < nw; t++)
		w[t].pid = pid;
	restore_run_workers(w, sizeof(w[0]), nw, work);
	restore_fill_close(&f);

	uint64_t bytes = 0, pm = 0;
	for (uint32_t t = 0; t < nw; t++) {
		bytes += w[t].job.bytes;
		pm += w[t].proc_mem_bytes;
		if (w[t].job.err) {
			char what[160];
			snprintf(what, sizeof(what), "writePages: %s at 0x%" PRIx64, w[t].err_step, w[t].job.err_addr);
			return bridge_throw_errno(env, what, w[t].job.err, pid, NULL);
		}
	}
	napi_value res, v;
	napi_create_object(env, &res);
	napi_create_double(env, (double)bytes, &v);
	napi_set_named_property(env, res, "bytes", v);
	napi_create_double(env, (double)pm, &v);
	napi_set_named_property(env, res, "procMemBytes", v);
	return res;
}

static napi_value memfd_create_(napi_env env, napi_callback_info info)
{
	const char *fn = "memfdCreate";
	napi_value argv[2];
	char *name = NULL;
	uint32_t flags;
	if (!bridge_get_args(env, info, 2, argv, fn) ||
	    !bridge_arg_string(env, argv[0], &name, fn, "name must be a string") ||
	    !bridge_arg_uint32(env, argv[1], &flags, fn, "flags must be a uint32 (MFD_*)")) {
		free(name);
		return NULL;
	}
	int fd = memfd_create(name, flags);
	int err = errno;
	free(name);
	if (fd < 0)
		return bridge_throw_errno(env, "memfd_create", err, 0, NULL);
	napi_value r;
	napi_create_int32(env, fd, &r);
	return r;
}

void bridge_init_restore_pages(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "writePages", write_pages },
		{ "memfdCreate", memfd_create_ },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
