// A test CA made with openssl: certificates it signed for a server and a client, both for
// one IP address, and revocation lists (criu's --tls options take these PEM files).
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

function openssl(dir: string, args: string[]): void {
  const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr || r.error?.message}`);
}

export interface Pki {
  /** the CA certificate */
  ca: string;
  /** "server" or "client": its certificate and key */
  files: (who: string) => { cert: string; key: string };
  /** "server" or "client": --tls and the files, as a command line takes them */
  cert: (who: string) => string[];
}

/** A CA and certificates it signed for `name` (client and server), made in `dir`. */
export function pki(dir: string, name = "127.0.0.1"): Pki {
  openssl(dir, ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=tscriu test CA"]);
  for (const who of ["server", "client"]) {
    openssl(dir, ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${who}.key`, "-out", `${who}.csr`, "-subj", `/CN=${name}`]);
    writeFileSync(join(dir, `${who}.ext`), `subjectAltName=IP:${name}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n`);
    openssl(dir, ["x509", "-req", "-in", `${who}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${who}.pem`, "-days", "2", "-extfile", `${who}.ext`]);
  }
  const ca = join(dir, "ca.pem");
  const files = (who: string): { cert: string; key: string } => ({ cert: join(dir, `${who}.pem`), key: join(dir, `${who}.key`) });
  return { ca, files, cert: (who) => ["--tls", "--tls-cacert", ca, "--tls-cert", files(who).cert, "--tls-key", files(who).key] };
}

/** CRLs of pki()'s CA in `dir`: one revoking nothing, one revoking the `revoke` certificate. */
export function crls(dir: string, revoke: string): { empty: string; revoked: string } {
  writeFileSync(join(dir, "ca.cnf"), "[ ca ]\ndefault_ca = testca\n[ testca ]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n");
  writeFileSync(join(dir, "index.txt"), "");
  writeFileSync(join(dir, "crlnumber"), "01\n");
  const gen = (out: string): void => openssl(dir, ["ca", "-config", "ca.cnf", "-gencrl", "-keyfile", "ca.key", "-cert", "ca.pem", "-out", out]);
  gen("empty-crl.pem");
  openssl(dir, ["ca", "-config", "ca.cnf", "-revoke", `${revoke}.pem`, "-keyfile", "ca.key", "-cert", "ca.pem"]);
  gen("revoked-crl.pem");
  return { empty: join(dir, "empty-crl.pem"), revoked: join(dir, "revoked-crl.pem") };
}
