import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TestCerts {
  dir: string;
  /** The CA that signed the server certificate. */
  ca: string;
  /** Another CA, which signed nothing we serve (a "wrong CA"). */
  otherCa: string;
  serverCert: string;
  serverKey: string;
  remove(): void;
}

/** A CA and a server certificate for localhost / 127.0.0.1 made by openssl (EC P-256, valid 2 days), and an unrelated CA. */
export function makeTestCerts(): TestCerts {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tether-tls-'));
  const f = (name: string) => path.join(dir, name);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=tether test CA');
  ssl('req', '-x509', ...ec, '-keyout', f('other-ca.key'), '-out', f('other-ca.pem'), '-days', '2', '-subj', '/CN=some other CA');
  ssl('req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost');
  writeFileSync(f('san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  ssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('san.ext'));
  return {
    dir,
    ca: f('ca.pem'),
    otherCa: f('other-ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
