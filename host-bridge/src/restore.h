/* The restore side of the host bridge: starting the stub with the dumped PID
 * (restore.c), running syscalls inside it from the trampoline page
 * (restore_remote.c) and filling its memory from page images
 * (restore_pages.c). */
#ifndef TSCRIU_RESTORE_H
#define TSCRIU_RESTORE_H

#include "bridge.h"

void bridge_init_restore_remote(napi_env env, napi_value exports);
void bridge_init_restore_pages(napi_env env, napi_value exports);
void bridge_init_restore_uffd(napi_env env, napi_value exports);

/* A raw syscall returning -errno: usable where errno (thread-local storage of
 * the calling thread) must not be touched, e.g. in a CLONE_VM child. */
static inline long restore_raw6(long nr, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#endif
