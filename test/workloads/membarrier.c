/* Registers for the private expedited membarrier commands the kernel offers
 * (MEMBARRIER_CMD_QUERY): PRIVATE_EXPEDITED always, SYNC_CORE and RSEQ where
 * present. A registration belongs to the mm; without it the command fails with
 * EPERM. Self-check (SIGUSR1): every registered command succeeds, and
 * MEMBARRIER_CMD_GET_REGISTRATIONS (where the kernel has it) reports what was
 * registered: "PASS registered=0x..". */
#include "workload.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>

static long membarrier(int cmd)
{
	return syscall(SYS_membarrier, cmd, 0, 0);
}

/* MEMBARRIER_CMD_REGISTER_x == MEMBARRIER_CMD_x << 1 */
static const int cmds[] = { 1 << 3 /* PRIVATE_EXPEDITED */, 1 << 5 /* ..._SYNC_CORE */, 1 << 7 /* ..._RSEQ */ };
#define GET_REGISTRATIONS (1 << 9)

int main(int argc, char **argv)
{
	wl_init(argc, argv);
	wl_install_check_handler();
	long supported = membarrier(0 /* MEMBARRIER_CMD_QUERY */);
	if (supported < 0)
		wl_die("membarrier(QUERY)");
	if (!(supported & cmds[0]))
		wl_die("no MEMBARRIER_CMD_PRIVATE_EXPEDITED");
	if (membarrier(cmds[0]) != -1 || errno != EPERM)
		wl_die("PRIVATE_EXPEDITED before registering did not fail with EPERM");
	long registered = 0;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (!(supported & (cmds[i] << 1)))
			continue;
		if (membarrier(cmds[i] << 1) < 0)
			wl_die("membarrier(REGISTER)");
		registered |= cmds[i] << 1;
	}
	wl_ready("registered=0x%lx", registered);
	for (;;) {
		wl_wait_check();
		char bad[128] = "";
		for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]) && !bad[0]; i++)
			if ((registered & (cmds[i] << 1)) && membarrier(cmds[i]) < 0)
				snprintf(bad, sizeof(bad), "membarrier(0x%x): %s", cmds[i], strerror(errno));
		long now = membarrier(GET_REGISTRATIONS);
		if (!bad[0] && now >= 0 && (now & registered) != registered)
			snprintf(bad, sizeof(bad), "GET_REGISTRATIONS says 0x%lx, registered 0x%lx", now, registered);
		if (bad[0])
			wl_result("FAIL %s", bad);
		else
			wl_result("PASS registered=0x%lx", registered);
	}
}
