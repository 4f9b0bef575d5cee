// The lazy-pages daemon's page-server client (orchestrator/page-server/fetch.ts) against a
// server made here that answers each PS_IOV_GET with pages whose every word is the
// page's own address: what an answer's buffer holds can be checked after other answers
// have come in. The client receives small answers into pieces of a shared slab and large
// ones into buffers of their own, which recycle() hands to later large answers.
import { createServer, type Server, type Socket } from "node:net";
import test, { type ExecutionContext } from "ava";
import { PE_PRESENT } from "../images/pages.js";
import { PageFetcher } from "../orchestrator/page-server/fetch.js";
import { decodeHeader, encodeHeader, PS_IOV } from "../orchestrator/page-server/wire.js";

const PAGE = 4096;
const PID = 4242;

/** A server speaking 32-byte headers: every GET is answered in full, each word of a page its address. */
async function addressServer(t: ExecutionContext): Promise<number> {
  const socks = new Set<Socket>();
  const server: Server = createServer((sock) => {
    socks.add(sock);
    let held = Buffer.alloc(0);
    sock.on("data", (chunk: Buffer) => {
      held = Buffer.concat([held, chunk]);
      while (held.length >= 32) {
        const h = decodeHeader(32, held);
        held = held.subarray(32);
        if (h.cmd === PS_IOV.CLOSE) {
          sock.end(Buffer.alloc(4));
          return;
        }
        const pages = Number(h.nrPages);
        const data = Buffer.alloc(pages * PAGE);
        for (let p = 0; p < pages; p++) {
          const at = h.vaddr + BigInt(p * PAGE);
          for (let w = 0; w < PAGE; w += 8) data.writeBigUInt64LE(at, p * PAGE + w);
        }
        sock.write(Buffer.concat([encodeHeader(32, { cmd: PS_IOV.ADD_F, flags: PE_PRESENT, nrPages: h.nrPages, vaddr: h.vaddr, dstId: h.dstId }), data]));
      }
    });
    sock.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => {
    for (const s of socks) s.destroy();
    server.close();
  });
  return (server.address() as { port: number }).port;
}

/** The first page whose words are not its address, or undefined. */
function wrongPage(data: Buffer, vaddr: bigint): string | undefined {
  for (let off = 0; off < data.length; off += 8) {
    const want = vaddr + BigInt(Math.floor(off / PAGE) * PAGE);
    const got = data.readBigUInt64LE(off);
    if (got !== want) return `the word at +0x${off.toString(16)} holds 0x${got.toString(16)}, not 0x${want.toString(16)}`;
  }
  return undefined;
}

test("a small answer given back with recycle() is not handed to a large one: the slab it is a piece of still holds other answers", async (t) => {
  const f = await PageFetcher.connect({ address: "127.0.0.1", port: await addressServer(t), layout: 32 });
  // two small answers: the first and second pieces of one slab
  const [a, b] = await Promise.all([f.get(PID, 0x10000n, 16), f.get(PID, 0x40000n, 16)]);
  t.true(a.data.buffer === b.data.buffer, "both small answers in one slab (the case this test is about)");
  t.is(a.data.byteOffset, 0);
  f.recycle(a.data);
  // a large answer, then another small one, while b is still unused
  const big = await f.get(PID, 0x1000000n, 1024);
  const c = await f.get(PID, 0x80000n, 16);
  t.true(big.data.buffer !== b.data.buffer, "the large answer got a buffer of its own");
  t.is(wrongPage(b.data, 0x40000n), undefined, "the second small answer is intact");
  t.is(wrongPage(big.data, 0x1000000n), undefined);
  t.is(wrongPage(c.data, 0x80000n), undefined);
  await f.close();
});

test("a large answer's buffer given back with recycle() takes the next large answer", async (t) => {
  const f = await PageFetcher.connect({ address: "127.0.0.1", port: await addressServer(t), layout: 32 });
  const one = await f.get(PID, 0x1000000n, 1024);
  t.is(wrongPage(one.data, 0x1000000n), undefined);
  const first = one.data.buffer;
  f.recycle(one.data);
  const two = await f.get(PID, 0x2000000n, 1000);
  t.true(two.data.buffer === first, "the buffer given back is used again");
  t.is(two.data.length, 1000 * PAGE);
  t.is(wrongPage(two.data, 0x2000000n), undefined);
  // one not given back is not: a third large answer gets fresh memory
  const three = await f.get(PID, 0x3000000n, 1024);
  t.true(three.data.buffer !== first, "a buffer still in use is not handed out");
  t.is(wrongPage(two.data, 0x2000000n), undefined, "the answer still in use is intact");
  t.is(wrongPage(three.data, 0x3000000n), undefined);
  // given back twice, it takes one answer, not two at once
  f.recycle(two.data);
  f.recycle(two.data);
  const [four, five] = await Promise.all([f.get(PID, 0x4000000n, 1024), f.get(PID, 0x5000000n, 1024)]);
  t.true(four.data.buffer !== five.data.buffer, "two answers in flight have two buffers");
  t.is(wrongPage(four.data, 0x4000000n), undefined);
  t.is(wrongPage(five.data, 0x5000000n), undefined);
  await f.close();
});
