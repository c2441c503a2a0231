import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The relay's signing key: 32 random bytes in `<dataDir>/session.key` (0600), made on first
 * start. Deleting it signs everyone out.
 */
export async function loadOrCreateKey(dataDir: string): Promise<Uint8Array> {
  const path = join(dataDir, 'session.key');
  try {
    const key = await readFile(path);
    if (key.length === 32) return new Uint8Array(key);
    throw new Error(`${path} is not a 32-byte key; remove it to make a new one (signs everyone out)`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const key = randomBytes(32);
  const fh = await open(path, 'wx', 0o600);
  try {
    await fh.writeFile(key);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return new Uint8Array(key);
}
