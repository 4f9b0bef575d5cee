/* Every kind of VMA a dump must save: private anonymous (patterned, with untouched
 * pages), a PROT_NONE guard, a read-only anonymous region, shared anonymous memory,
 * a private file mapping with one copy-on-written page, a shared file mapping, and a
 * private mapping of a file that was unlinked afterwards. Self-check (SIGUSR1):
 * every region still holds what was written ("PASS ..."). */
#include "workload.h"

#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096

static uint64_t word(uint64_t off)
{
	return 0xA5A5000000000000ULL | off;
}

static void *map_file(const char *name, char fill, int shared, int unlink_after)
{
	char path[4096], buf[PAGE];
	snprintf(path, sizeof(path), "%s/%s", wl_dir, name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		wl_die("open map file");
	memset(buf, fill, sizeof(buf));
	for (int i = 0; i < 4; i++)
		if (write(fd, buf, PAGE) != PAGE)
			wl_die("write map file");
	void *p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		wl_die("mmap file");
	close(fd);
	if (unlink_after && unlink(path) < 0)
		wl_die("unlink");
	return p;
}

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	size_t anon_len = 64 * PAGE;
	uint64_t *anon = mmap(NULL, anon_len + 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED)
		wl_die("mmap anon");
	/* pages 0..15 and every 4th page after: the rest stay untouched */
	for (size_t pg = 0; pg < 64; pg++)
		if (pg < 16 || pg % 4 == 0)
			for (size_t i = 0; i < PAGE / 8; i++)
				anon[(pg * PAGE) / 8 + i] = word(pg * PAGE + i * 8);
	char *guard = (char *)anon + anon_len;
	if (mprotect(guard, 4 * PAGE, PROT_NONE) < 0)
		wl_die("mprotect guard");
	char *ro = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(ro, 'R', 2 * PAGE);
	if (mprotect(ro, 2 * PAGE, PROT_READ) < 0)
		wl_die("mprotect ro");
	unsigned char *shanon = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shanon == MAP_FAILED)
		wl_die("mmap shared anon");
	for (int i = 0; i < 4 * PAGE; i++)
		shanon[i] = (unsigned char)(0x5A ^ (i & 0xff));
	char *fpriv = map_file("private.dat", 'p', 0, 0);
	memset(fpriv + PAGE, 'P', PAGE);
	volatile char sink = fpriv[0];
	(void)sink;
	char *fshared = map_file("shared.dat", 's', 1, 0);
	memset(fshared + 2 * PAGE, 'S', PAGE);
	char *fdel = map_file("deleted.dat", 'd', 0, 1);
	memset(fdel + 3 * PAGE, 'D', PAGE);
	wl_install_check_handler();
	wl_write_counter(0);
	wl_ready("anon=%p guard=%p ro=%p shanon=%p fpriv=%p fshared=%p fdel=%p", (void *)anon, (void *)guard,
		 (void *)ro, (void *)shanon, (void *)fpriv, (void *)fshared, (void *)fdel);
	unsigned long long n = 0;
	for (;;) {
		wl_write_counter(++n);
		if (wl_check_requested) {
			wl_check_requested = 0;
			const char *bad = NULL;
			for (size_t pg = 0; pg < 64 && !bad; pg++)
				for (size_t i = 0; i < PAGE / 8; i++) {
					uint64_t want = (pg < 16 || pg % 4 == 0) ? word(pg * PAGE + i * 8) : 0;
					if (anon[(pg * PAGE) / 8 + i] != want) {
						bad = "anon";
						break;
					}
				}
			for (int i = 0; i < 2 * PAGE && !bad; i++)
				if (ro[i] != 'R')
					bad = "ro";
			for (int i = 0; i < 4 * PAGE && !bad; i++)
				if (shanon[i] != (unsigned char)(0x5A ^ (i & 0xff)))
					bad = "shanon";
			for (int i = 0; i < 4 * PAGE && !bad; i++)
				if (fpriv[i] != (i / PAGE == 1 ? 'P' : 'p'))
					bad = "fpriv";
			for (int i = 0; i < 4 * PAGE && !bad; i++)
				if (fshared[i] != (i / PAGE == 2 ? 'S' : 's'))
					bad = "fshared";
			for (int i = 0; i < 4 * PAGE && !bad; i++)
				if (fdel[i] != (i / PAGE == 3 ? 'D' : 'd'))
					bad = "fdel";
			if (bad)
				wl_result("FAIL %s", bad);
			else
				wl_result("PASS count=%llu", n);
		}
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
	}
}
