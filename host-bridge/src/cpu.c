/* CPUID and XGETBV, for cpuinfo dump/check. */
#include "bridge.h"

#include <cpuid.h>

static napi_value cpuid(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	uint32_t leaf, sub;
	if (!bridge_get_args(env, info, 2, argv, "cpuid") ||
	    !bridge_arg_uint32(env, argv[0], &leaf, "cpuid", "leaf must be a uint32") ||
	    !bridge_arg_uint32(env, argv[1], &sub, "cpuid", "subleaf must be a uint32"))
		return NULL;
	unsigned int r[4] = { 0, 0, 0, 0 };
	__cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
	napi_value arr;
	napi_create_array_with_length(env, 4, &arr);
	for (uint32_t i = 0; i < 4; i++) {
		napi_value v;
		napi_create_uint32(env, r[i], &v);
		napi_set_element(env, arr, i, v);
	}
	return arr;
}

/* XCR0 and friends; only valid when CPUID says OSXSAVE. */
static napi_value xgetbv(napi_env env, napi_callback_info info)
{
	napi_value argv[1];
	uint32_t idx;
	if (!bridge_get_args(env, info, 1, argv, "xgetbv") ||
	    !bridge_arg_uint32(env, argv[0], &idx, "xgetbv", "index must be a uint32"))
		return NULL;
	uint32_t lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(idx));
	napi_value r;
	napi_create_bigint_uint64(env, ((uint64_t)hi << 32) | lo, &r);
	return r;
}

void bridge_init_cpu(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "cpuid", cpuid },
		{ "xgetbv", xgetbv },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
