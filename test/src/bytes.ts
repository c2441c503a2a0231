// Deterministic pseudo-random bytes, fast: the AES-128-CTR keystream (key = first 16 bytes of
// sha256("porthole-bytes:" + seed), IV zero), made 64 KiB at a time by OpenSSL. Anyone can
// regenerate the same bytes to check a download or make an upload.
import { createCipheriv, createHash } from 'node:crypto';

export const BLOCK = 64 * 1024;
const ZEROS = Buffer.alloc(BLOCK);

function keyOf(seed: string): Buffer {
  return createHash('sha256').update(`porthole-bytes:${seed}`).digest().subarray(0, 16);
}

/** Yields exactly n deterministic bytes for seed in blocks of at most 64 KiB (fresh buffers). */
export function* deterministicBlocks(n: number, seed = '0'): Generator<Buffer, void, undefined> {
  const cipher = createCipheriv('aes-128-ctr', keyOf(seed), Buffer.alloc(16));
  let left = n;
  while (left > 0) {
    const take = Math.min(BLOCK, left);
    yield cipher.update(take === BLOCK ? ZEROS : ZEROS.subarray(0, take));
    left -= take;
  }
}

/** The whole n bytes at once (for small n). */
export function deterministicBytes(n: number, seed = '0'): Buffer {
  return Buffer.concat([...deterministicBlocks(n, seed)], n);
}

const shaCache = new Map<string, string>();

/** Hex sha256 of deterministicBytes(n, seed); cached (a few entries) because 256 MiB takes a while. */
export function expectedSha256(n: number, seed = '0'): string {
  const key = `${n}:${seed}`;
  const hit = shaCache.get(key);
  if (hit) return hit;
  const h = createHash('sha256');
  for (const block of deterministicBlocks(n, seed)) h.update(block);
  const hex = h.digest('hex');
  if (shaCache.size >= 16) shaCache.delete(shaCache.keys().next().value as string);
  shaCache.set(key, hex);
  return hex;
}

/** Hex sha256 of a buffer. */
export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
