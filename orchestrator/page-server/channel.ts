// The byte stream of a page-server session: the TCP socket itself, or TLS over it
// (criu's --tls: X.509 both ways, each side checking the other's certificate against the
// CA). The plain channel reads and writes the socket with blocking calls (page data goes
// from and to buffers without a copy through Node's streams), and sends page data on
// libuv's thread pool (sendAsync) so that the dump reads the next pages out of the task
// meanwhile; the TLS one goes through node:tls, the same calls awaited. And the listening
// socket the serving sides accept their one connection on (listenTcp).

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { PeerCertificate, SecureContextOptions, TLSSocket } from "node:tls";
import { bridge } from "../../host-bridge/load.js";
import { addrWordsOf, parseSockaddr, sockaddr } from "../fds/inet-common.js";

const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;

// node:tls (with node:crypto) and node:net are loaded when a TLS channel is made: ~12 ms
// of every dump's start otherwise, for a session most dumps never open.
const tlsModule = (): typeof import("node:tls") => createRequire(import.meta.url)("node:tls") as typeof import("node:tls");
const netModule = (): typeof import("node:net") => createRequire(import.meta.url)("node:net") as typeof import("node:net");

export interface Channel {
  /** fills buf; the bytes read, fewer only when the peer closed (ETIMEDOUT after timeoutMs without data) */
  recvFull(buf: Uint8Array, timeoutMs?: number): Promise<number>;
  /** sends all of data (TLS: queued; `flush` waits until it is taken) */
  send(data: Uint8Array): void;
  /**
   * sends all of data after what was given before; resolves once data may be reused
   * and the channel can take more (TLS buffers what it has not sent)
   */
  sendAsync(data: Uint8Array): Promise<void>;
  /** waits while much is queued and not sent (TLS): page data must not pile up in memory */
  flushIfBehind(): Promise<void>;
  /** pushes what is queued and corked out now: an answer is awaited */
  flush(): Promise<void>;
  /** ends the session (TLS: close_notify) */
  end(): Promise<void>;
  /** lets go of the socket: closed, unless it was given (--ps-socket) to a plain channel */
  close(): void;
  /** after a failure: the peer sees the connection end at once */
  abort(): void;
}

/** Sets a TCP option to 1; a socket that is no TCP socket (a socketpair given as --ps-socket) has none, and needs none. */
export function tcpOption(fd: number, name: number): void {
  try {
    bridge().setsockoptInts(fd, Int32Array.of(IPPROTO_TCP, name, 1));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EOPNOTSUPP") throw e;
  }
}

export class PlainChannel implements Channel {
  /** the sends on the thread pool, in order: a later send waits for them */
  private sending: Promise<void> = Promise.resolve();
  private inFlight = 0;
  /** the first failed send: every later one fails with it */
  private failed: Error | undefined;
  private closed = false;

  constructor(
    private readonly fd: number,
    /** a --ps-socket: the caller's, shut down rather than closed */
    private readonly given = false,
  ) {}

  /** The fd is closed once no send of the thread pool can still use it (its number could be reused meanwhile). */
  private release(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.given) return;
    const fd = this.fd;
    if (this.inFlight === 0) bridge().close(fd);
    else void this.sending.finally(() => bridge().close(fd));
  }

  close(): void {
    this.release();
  }

  abort(): void {
    // wakes a send blocked on a peer that stopped reading
    if (this.given || this.inFlight > 0) bridge().shutdown(this.fd, 2);
    this.release();
  }

  recvFull(buf: Uint8Array, timeoutMs?: number): Promise<number> {
    return Promise.resolve(bridge().recvFull(this.fd, buf, timeoutMs));
  }

  send(data: Uint8Array): void {
    if (this.failed) throw this.failed;
    if (this.inFlight === 0) return bridge().sendFull(this.fd, data);
    // behind the sends in flight; a copy, the caller reuses its buffer
    this.sendAsync(Buffer.from(data)).catch(() => undefined);
  }

  sendAsync(data: Uint8Array): Promise<void> {
    this.inFlight++;
    const sent = this.sending.then(() => {
      if (this.failed) throw this.failed;
      if (this.closed) throw new Error("send: the page-server connection is closed");
      return bridge().sendFullAsync(this.fd, data);
    });
    this.sending = sent.then(
      () => void this.inFlight--,
      (e: unknown) => {
        this.inFlight--;
        this.failed ??= e instanceof Error ? e : new Error(String(e));
      },
    );
    return sent;
  }

  async flush(): Promise<void> {
    await this.sending;
    if (this.failed) throw this.failed;
    tcpOption(this.fd, TCP_NODELAY);
  }

  flushIfBehind(): Promise<void> {
    return Promise.resolve();
  }

  end(): Promise<void> {
    return Promise.resolve();
  }
}

/** Bytes TLS may hold unsent before a sender waits. */
const TLS_BACKLOG = 8 << 20;
/** The most plaintext one TLS record carries. */
export const RECORD = 16384;

/** criu's TLS options; unset files are criu's defaults. */
export interface TlsOptions {
  cacert?: string | undefined;
  cacrl?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  /** --tls-no-cn-verify: the peer's certificate need not name the page server's address */
  noCnVerify?: boolean | undefined;
}

const DEFAULTS = { cacert: "/etc/pki/CA/cacert.pem", cacrl: "/etc/pki/CA/cacrl.pem", cert: "/etc/pki/criu/cert.pem", key: "/etc/pki/criu/private/key.pem" };

function readPem(path: string, what: string, must: boolean): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (e) {
    if (!must && (e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`TLS: cannot read the ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** The credentials as criu loads them: its default paths, the system's CAs when no --tls-cacert is given. */
function credentials(o: TlsOptions): SecureContextOptions {
  const cert = readPem(o.cert ?? DEFAULTS.cert, "certificate (--tls-cert)", true)!;
  const key = readPem(o.key ?? DEFAULTS.key, "private key (--tls-key)", true)!;
  const ca = readPem(o.cacert ?? DEFAULTS.cacert, "CA certificate (--tls-cacert)", o.cacert !== undefined);
  const crl = readPem(o.cacrl ?? DEFAULTS.cacrl, "revocation list (--tls-cacrl)", o.cacrl !== undefined);
  const creds = { cert, key, ...(ca ? { ca } : {}), ...(crl ? { crl } : {}) };
  tlsModule().createSecureContext(creds); // a key that does not match its certificate fails here, named
  return creds;
}

/**
 * The peer's certificate against `name` (criu's gnutls_certificate_verify_peers3 with the
 * page server's address as the hostname), or why not.
 */
function nameCheck(name: string | undefined, cert: PeerCertificate): string | undefined {
  if (name === undefined) return undefined;
  const err = tlsModule().checkServerIdentity(name, cert);
  return err ? err.message : undefined;
}

export class TlsChannel implements Channel {
  private readonly chunks: Buffer[] = [];
  private have = 0;
  private ended = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;
  /** takes the incoming data instead of recvFull (readInto) */
  private taker: { data(b: Buffer): void; gone(e: Error | undefined): void } | undefined;

  private constructor(private readonly tls: TLSSocket) {
    tls.on("data", (b: Buffer) => {
      if (this.taker) return this.taker.data(b);
      this.chunks.push(b);
      this.have += b.length;
      this.wake?.();
    });
    const ended = (): void => {
      this.ended = true;
      this.taker?.gone(undefined);
      this.wake?.();
    };
    tls.on("end", ended);
    tls.on("close", ended);
    tls.on("error", (e: Error) => {
      this.error ??= e;
      this.taker?.gone(e);
      this.wake?.();
    });
  }

  /**
   * TLS over the connected socket `fd`, as a client (the dump) or a server (the page
   * server); resolves once the handshake is done and the peer's certificate checked:
   * against the CA, and against `address` (the page server's) unless --tls-no-cn-verify.
   * The socket is node:tls's from here on, closed with the channel (or at a failure).
   */
  static async open(fd: number, role: "client" | "server", address: string | undefined, o: TlsOptions): Promise<TlsChannel> {
    const socket = new (netModule().Socket)({ fd, readable: true, writable: true });
    socket.setNoDelay(true);
    let creds: SecureContextOptions;
    try {
      creds = credentials(o);
    } catch (e) {
      socket.destroy();
      throw e;
    }
    const tls: TLSSocket = await new Promise((resolve, reject) => {
      const fail = (e: Error): void => {
        socket.destroy();
        reject(new Error(`TLS handshake: ${e.message}`));
      };
      if (role === "client") {
        const t = tlsModule().connect({ socket, ...creds, rejectUnauthorized: true, servername: undefined, checkServerIdentity: () => undefined }, () => resolve(t));
        t.once("error", fail);
      } else {
        // through a tls.Server, which checks the client's certificate (a bare server-side
        // TLSSocket does not). TLS 1.2: a TLS 1.3 server sends session tickets after the handshake, which criu's
        // client reads as an error ("The page server doesn't answer: Resource temporarily unavailable")
        const server = tlsModule().createServer({ ...creds, requestCert: true, rejectUnauthorized: true, maxVersion: "TLSv1.2" });
        server.once("secureConnection", (t: TLSSocket) => resolve(t));
        server.once("tlsClientError", fail);
        server.emit("connection", socket);
      }
    });
    if (!tls.authorized) {
      tls.destroy();
      throw new Error(`TLS: the peer's certificate is not trusted: ${String(tls.authorizationError)}`);
    }
    const why = o.noCnVerify ? undefined : nameCheck(address, tls.getPeerCertificate());
    if (why) {
      tls.destroy();
      throw new Error(`TLS: the peer's certificate does not name ${address} (--tls-no-cn-verify skips this check): ${why}`);
    }
    tls.removeAllListeners("error");
    return new TlsChannel(tls);
  }

  /**
   * Hands what arrives to `data` as it comes (and the end or an error to `gone`) instead of
   * keeping it for recvFull: a reader with many answers in flight (fetch.ts) puts each
   * where it belongs with one copy.
   */
  readInto(data: (b: Buffer) => void, gone: (e: Error | undefined) => void): void {
    this.taker = { data, gone };
    for (const c of this.chunks.splice(0)) data(c);
    this.have = 0;
    if (this.error) gone(this.error);
    else if (this.ended) gone(undefined);
  }

  async recvFull(buf: Uint8Array, timeoutMs?: number): Promise<number> {
    let got = 0;
    const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    while (got < buf.length) {
      if (this.have === 0) {
        if (this.error) throw this.error;
        if (this.ended) break;
        const left = deadline - Date.now();
        if (left <= 0) throw Object.assign(new Error("recv: ETIMEDOUT"), { code: "ETIMEDOUT" });
        await new Promise<void>((r) => {
          const timer = left === Infinity ? undefined : setTimeout(r, left);
          this.wake = () => {
            if (timer) clearTimeout(timer);
            this.wake = undefined;
            r();
          };
        });
        continue;
      }
      const c = this.chunks[0]!;
      const n = Math.min(c.length, buf.length - got);
      buf.set(c.subarray(0, n), got);
      got += n;
      this.have -= n;
      if (n === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(n);
    }
    return got;
  }

  /**
   * What send() was given, written one piece at a time, each piece at most one TLS record:
   * criu reads a header with one gnutls_record_recv and fails on a short one, so a header
   * must never straddle two records. node:tls joins writes queued together into one
   * record stream, hence a single write in flight.
   */
  private readonly pieces: Buffer[] = [];
  private queued = 0;
  /** whether pump() runs; set and cleared in the same turns as the queue changes */
  private running = false;
  private pumping: Promise<void> = Promise.resolve();

  send(data: Uint8Array): void {
    if (this.error) throw this.error;
    // a copy: the caller reuses its buffer
    const copy = Buffer.from(data);
    for (let off = 0; off < copy.length; off += RECORD) this.pieces.push(copy.subarray(off, off + RECORD));
    this.queued += copy.length;
    if (this.running) return;
    this.running = true;
    this.pumping = this.pump();
    this.pumping.catch(() => undefined);
  }

  private async pump(): Promise<void> {
    try {
      for (let p = this.pieces.shift(); p; p = this.pieces.shift()) {
        await new Promise<void>((resolve, reject) => this.tls.write(p, (e) => (e ? reject(e) : resolve())));
        this.queued -= p.length;
      }
    } finally {
      this.running = false;
    }
  }

  async flush(): Promise<void> {
    if (this.error) throw this.error;
    while (this.running) await this.pumping;
    await this.pumping;
  }

  async sendAsync(data: Uint8Array): Promise<void> {
    this.send(data);
    await this.flushIfBehind();
  }

  async flushIfBehind(): Promise<void> {
    if (this.queued > TLS_BACKLOG) await this.flush();
  }

  async end(): Promise<void> {
    await new Promise<void>((resolve) => this.tls.end(resolve));
  }

  close(): void {
    this.tls.destroy();
  }

  abort(): void {
    this.tls.destroy();
  }
}

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;

/** criu's setup_tcp_server: bound (any IPv4 address by default), listening; and the port, when 0 asked for one. */
export function listenTcp(address: string | undefined, port: number): { fd: number; port: number } {
  const b = bridge();
  const words = address === undefined ? [0] : addrWordsOf(address);
  if (!words) throw new Error(`the address ${address} is neither IPv4 nor IPv6 (criu takes numeric addresses here)`);
  const family = words.length === 1 ? AF_INET : AF_INET6;
  const fd = b.socket(family, SOCK_STREAM, IPPROTO_TCP);
  try {
    b.setsockoptInts(fd, Int32Array.of(SOL_SOCKET, SO_REUSEADDR, 1));
    b.bindAddr(fd, sockaddr(family, port, words));
    b.listen(fd, 1);
    return { fd, port: parseSockaddr(b.sockName(fd)).port };
  } catch (e) {
    b.close(fd);
    throw e;
  }
}

