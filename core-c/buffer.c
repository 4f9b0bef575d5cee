// SPDX-License-Identifier: MIT
/*
 * The one fixed buffer through which all data crosses the wasm boundary, and
 * the small error/aux state that goes with the last call. Nothing is ever
 * allocated: the loader copies inputs in, calls, and copies results out.
 */
#include "tc.h"

static uint8_t tc_buf[TC_BUF_SIZE] __attribute__((aligned(64)));

static int32_t err_list = -1;
static uint32_t err_index;
static uint32_t aux_value;

void tc_set_err(int32_t list, uint32_t index)
{
	err_list = list;
	err_index = index;
}

int32_t tc_fail(int32_t code, int32_t list, uint32_t index)
{
	tc_set_err(list, index);
	return code;
}

void tc_set_aux(uint32_t value)
{
	aux_value = value;
}

void *tc_region(uint32_t off, uint64_t len, uint32_t align)
{
	if (off > TC_BUF_SIZE || len > (uint64_t)(TC_BUF_SIZE - off))
		return NULL;
	if (align > 1 && (off & (align - 1)))
		return NULL;
	return tc_buf + off;
}

TC_EXPORT("tc_abi_version") uint32_t tc_abi_version(void)
{
	return TC_ABI_VERSION;
}

TC_EXPORT("tc_buf") uint8_t *tc_buf_ptr(void)
{
	return tc_buf;
}

TC_EXPORT("tc_buf_size") uint32_t tc_buf_size(void)
{
	return TC_BUF_SIZE;
}

TC_EXPORT("tc_err_list") int32_t tc_err_list(void)
{
	return err_list;
}

TC_EXPORT("tc_err_index") uint32_t tc_err_index(void)
{
	return err_index;
}

TC_EXPORT("tc_aux") uint32_t tc_aux(void)
{
	return aux_value;
}

void tc_clear_err(void)
{
	err_list = -1;
	err_index = 0;
	aux_value = 0;
}
