/* Packet sockets (AF_PACKET): the kernel's table of them through sock_diag
 * (packet_diag), which alone tells a socket's multicast and promiscuous
 * memberships, its fanout group and its mapped rings. */
#include "bridge.h"

#include <linux/netlink.h>
#include <linux/packet_diag.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <string.h>
#include <sys/socket.h>

#ifndef AF_PACKET
#define AF_PACKET 17
#endif

static napi_value ring_object(napi_env env, const struct packet_diag_ring *r)
{
	napi_value o;
	napi_create_object(env, &o);
	bridge_set_u32(env, o, "blockSize", r->pdr_block_size);
	bridge_set_u32(env, o, "blockNr", r->pdr_block_nr);
	bridge_set_u32(env, o, "frameSize", r->pdr_frame_size);
	bridge_set_u32(env, o, "frameNr", r->pdr_frame_nr);
	bridge_set_u32(env, o, "retireTmo", r->pdr_retire_tmo);
	bridge_set_u32(env, o, "sizeofPriv", r->pdr_sizeof_priv);
	bridge_set_u32(env, o, "features", r->pdr_features);
	return o;
}

/* One packet_diag_msg and its attributes as {ino, type, num, ifindex, version, reserve,
 * copyThresh, tstamp, flags, mclist: [{index, type, addr}], fanout?, rxRing?, txRing?}. */
static napi_value diag_entry(napi_env env, const struct nlmsghdr *h, void *ctx)
{
	(void)ctx;
	const struct packet_diag_msg *m = NLMSG_DATA(h);
	napi_value r, mclist;
	napi_create_object(env, &r);
	napi_create_array(env, &mclist);
	bridge_set_u32(env, r, "ino", m->pdiag_ino);
	bridge_set_u32(env, r, "type", m->pdiag_type);
	bridge_set_u32(env, r, "num", m->pdiag_num);
	napi_set_named_property(env, r, "mclist", mclist);
	int len = (int)h->nlmsg_len - NLMSG_LENGTH(sizeof(*m));
	for (struct rtattr *a = (struct rtattr *)((char *)m + NLMSG_ALIGN(sizeof(*m))); RTA_OK(a, len);
	     a = RTA_NEXT(a, len)) {
		size_t n = RTA_PAYLOAD(a);
		const void *p = RTA_DATA(a);
		switch (a->rta_type) {
		case PACKET_DIAG_INFO:
			if (n >= sizeof(struct packet_diag_info)) {
				const struct packet_diag_info *i = p;
				bridge_set_u32(env, r, "ifindex", i->pdi_index);
				bridge_set_u32(env, r, "version", i->pdi_version);
				bridge_set_u32(env, r, "reserve", i->pdi_reserve);
				bridge_set_u32(env, r, "copyThresh", i->pdi_copy_thresh);
				bridge_set_u32(env, r, "tstamp", i->pdi_tstamp);
				bridge_set_u32(env, r, "flags", i->pdi_flags);
			}
			break;
		case PACKET_DIAG_MCLIST:
			for (size_t k = 0; (k + 1) * sizeof(struct packet_diag_mclist) <= n; k++) {
				const struct packet_diag_mclist *mc = (const struct packet_diag_mclist *)p + k;
				napi_value e, addr;
				void *data;
				size_t alen =
				    mc->pdmc_alen <= sizeof(mc->pdmc_addr) ? mc->pdmc_alen : sizeof(mc->pdmc_addr);
				napi_create_object(env, &e);
				bridge_set_u32(env, e, "index", mc->pdmc_index);
				bridge_set_u32(env, e, "type", mc->pdmc_type);
				napi_create_buffer_copy(env, alen, mc->pdmc_addr, &data, &addr);
				napi_set_named_property(env, e, "addr", addr);
				napi_set_element(env, mclist, (uint32_t)k, e);
			}
			break;
		case PACKET_DIAG_FANOUT:
			if (n >= sizeof(uint32_t)) {
				uint32_t f;
				memcpy(&f, p, sizeof(f));
				bridge_set_u32(env, r, "fanout", f);
			}
			break;
		case PACKET_DIAG_RX_RING:
		case PACKET_DIAG_TX_RING:
			if (n >= sizeof(struct packet_diag_ring))
				napi_set_named_property(env, r,
							a->rta_type == PACKET_DIAG_RX_RING ? "rxRing" : "txRing",
							ring_object(env, p));
			break;
		}
	}
	return r;
}

/* packetDiag(): every packet socket of tscriu's network namespace, as sock_diag reports it. */
static napi_value packet_diag(napi_env env, napi_callback_info info)
{
	(void)info;
	struct packet_diag_req req = { .sdiag_family = AF_PACKET,
				       .pdiag_show = PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG |
						     PACKET_SHOW_FANOUT };
	return bridge_sock_diag(env, &req, sizeof(req), sizeof(struct packet_diag_msg), diag_entry, NULL);
}

void bridge_init_packet(napi_env env, napi_value exports)
{
	static const bridge_fn fns[] = {
		{ "packetDiag", packet_diag },
	};
	bridge_register(env, exports, fns, sizeof(fns) / sizeof(fns[0]));
}
