import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';

export interface TlsFileSettings {
  ca?: string;
  cert?: string;
  key?: string;
}

/**
 * What `tether daemon --check` finds wrong with broker.tls: each of ca, cert and key (a path,
 * or PEM text inline) must be readable by this user and hold what it should; certificates
 * must be valid now; a cert needs its key and the two must match. One line per problem,
 * naming the key and the file; never the key's contents.
 */
export async function checkTlsFiles(tls: TlsFileSettings, now = new Date()): Promise<string[]> {
  const problems: string[] = [];
  const read = async (what: 'ca' | 'cert' | 'key'): Promise<string | null> => {
    const value = tls[what];
    if (value === undefined) return null;
    if (value.includes('-----BEGIN')) return value;
    try {
      return await readFile(value, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why =
        code === 'ENOENT'
          ? 'file not found'
          : code === 'EACCES' || code === 'EPERM'
            ? `not readable by this user (uid ${process.getuid?.() ?? '?'}): check its mode and owner, and those of its folders`
            : code === 'EISDIR'
              ? 'is a directory, not a file'
              : (err as Error).message;
      problems.push(`broker.tls.${what}: ${why} (${value})`);
      return null;
    }
  };
  const [ca, cert, key] = [await read('ca'), await read('cert'), await read('key')];

  const certificates = (what: 'ca' | 'cert', pem: string): X509Certificate[] => {
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    const where = tls[what]!.includes('-----BEGIN') ? '(inline)' : `(${tls[what]})`;
    if (blocks.length === 0) {
      problems.push(`broker.tls.${what}: no PEM certificate in it ("-----BEGIN CERTIFICATE-----") ${where}`);
      return [];
    }
    const out: X509Certificate[] = [];
    for (const block of blocks) {
      try {
        const x = new X509Certificate(block);
        if (new Date(x.validTo) < now) problems.push(`broker.tls.${what}: certificate "${x.subject.replace(/\n/g, ', ')}" expired on ${x.validTo} ${where}`);
        else if (new Date(x.validFrom) > now) problems.push(`broker.tls.${what}: certificate "${x.subject.replace(/\n/g, ', ')}" is not valid before ${x.validFrom} ${where}`);
        out.push(x);
      } catch (err) {
        problems.push(`broker.tls.${what}: a certificate in it cannot be parsed (${(err as Error).message}) ${where}`);
      }
    }
    return out;
  };

  if (ca !== null) certificates('ca', ca);
  const own = cert !== null ? certificates('cert', cert) : [];
  let privateKey: ReturnType<typeof createPrivateKey> | null = null;
  if (key !== null) {
    try {
      privateKey = createPrivateKey(key);
    } catch {
      problems.push(`broker.tls.key: not a readable PEM private key (encrypted keys are not supported) ${tls.key!.includes('-----BEGIN') ? '(inline)' : `(${tls.key})`}`);
    }
  }
  if (tls.cert !== undefined && tls.key === undefined) problems.push('broker.tls.cert: given without broker.tls.key (a client certificate needs its key)');
  if (tls.key !== undefined && tls.cert === undefined) problems.push('broker.tls.key: given without broker.tls.cert');
  if (own[0] && privateKey && !own[0].checkPrivateKey(privateKey)) problems.push('broker.tls.key: does not match the certificate in broker.tls.cert');
  return problems;
}
