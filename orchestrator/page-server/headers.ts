// Reading a page-server session's headers on the server side (serve.ts, lazy-serve.ts):
// the first header tells criu 4.1's 24-byte layout from criu 4.2's 32-byte one (`detect`;
// a session that opens with CLOSE is 32-byte when 8 more bytes follow at once), later ones
// are read whole in that layout.

import type { Channel } from "./channel.js";
import { decodeHeader, type Header, type Layout } from "./wire.js";

/** How long a CLOSE-first session's 8 more bytes may take to show a 32-byte peer. */
const LAYOUT_WAIT_MS = 200;

export class HeaderReader {
  layout: Layout | undefined;

  constructor(
    private readonly ch: Channel,
    /** the layout the first 24 bytes show, undefined when they cannot tell (a CLOSE) */
    private readonly detect: (first: Buffer) => Layout | undefined,
    /** ends the session: the message names what went wrong */
    private readonly fail: (why: string) => never,
    private readonly found: (layout: Layout) => void,
  ) {}

  /** The next header, or undefined when the peer closed between headers. */
  async next(): Promise<Header | undefined> {
    if (this.layout === undefined) {
      const first = Buffer.alloc(32);
      const got = await this.ch.recvFull(first.subarray(0, 24));
      if (got === 0) return undefined;
      if (got < 24) this.fail(`the connection closed after ${got} bytes of a header`);
      this.layout = this.detect(first) ?? (await this.closeLayout(first));
      if (this.layout === 32 && (await this.ch.recvFull(first.subarray(24, 32))) < 8) this.fail("the connection closed inside a header");
      this.found(this.layout);
      return decodeHeader(this.layout, first);
    }
    const buf = Buffer.alloc(this.layout);
    const got = await this.ch.recvFull(buf);
    if (got === 0) return undefined;
    if (got < this.layout) this.fail(`the connection closed after ${got} bytes of a header`);
    return decodeHeader(this.layout, buf);
  }

  private async closeLayout(first: Buffer): Promise<Layout> {
    try {
      return (await this.ch.recvFull(first.subarray(24, 32), LAYOUT_WAIT_MS)) === 8 ? 32 : 24;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ETIMEDOUT") return 24;
      throw e;
    }
  }
}
