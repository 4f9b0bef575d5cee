// ImageWriter.pagemapEntry (images/io.ts): the bytes of a pagemap_entry written without the
// general encoder are those add() writes, for addresses and page counts of every size
// (compat_nr_pages 0 past 32 bits), and the image decodes back to the same runs.
import test from "ava";
import { decodeImage, imageTypeByName } from "../images/codec.js";
import { ImageWriter } from "../images/io.js";

const PAGEMAP = imageTypeByName("PAGEMAP")!;

test("pagemapEntry writes what add() writes, and decodes back", (t) => {
  const general = new ImageWriter(PAGEMAP).add({ pages_id: 7 });
  const direct = new ImageWriter(PAGEMAP).add({ pages_id: 7 });
  let seed = 12345;
  const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 0x80000000), seed % n);
  const runs: [number, number, number][] = [
    [0, 0, 0],
    [0x1000, 1, 2],
    [0x7fff_ffff_f000, 0xffffffff, 6],
    [0x7fff_ffff_f000, 0x1_0000_0000, 4],
    [2 ** 52, 2 ** 40 + 3, 1],
    [0xffff_ffff_f000, 127, 128],
  ];
  for (let i = 0; i < 500; i++) runs.push([rnd(0x7fff_ffff) * 4096 + rnd(32) * 2 ** 43, rnd(3) === 0 ? rnd(200_000) : rnd(20), [1, 2, 4, 6][rnd(4)]!]);
  for (const [vaddr, pages, flags] of runs) {
    general.add({ vaddr: BigInt(vaddr), compat_nr_pages: pages <= 0xffffffff ? pages : 0, flags, nr_pages: BigInt(pages) });
    direct.pagemapEntry(vaddr, pages, flags);
  }
  t.deepEqual(Buffer.from(direct.bytes()), Buffer.from(general.bytes()));
  const img = decodeImage(direct.bytes(), "pagemap-1.img");
  t.is(img.entries.length, runs.length + 1);
  runs.forEach(([vaddr, pages, flags], i) => {
    const e = img.entries[i + 1] as { vaddr: bigint; nr_pages: bigint; flags: number };
    t.true(e.vaddr === BigInt(vaddr) && e.nr_pages === BigInt(pages) && e.flags === flags, `entry ${i + 1}`);
  });
});

test("pagemapEntry is for a pagemap's entries only", (t) => {
  t.throws(() => new ImageWriter(PAGEMAP).pagemapEntry(0x1000, 1, 2), { message: /entry 0 of PAGEMAP is no pagemap_entry/ });
  t.throws(() => new ImageWriter(imageTypeByName("INVENTORY")!).pagemapEntry(0x1000, 1, 2), { message: /entry 0 of INVENTORY is no pagemap_entry/ });
});
