// join() writes what the tunnel brings in one turn to the local service in one writev: the
// tunnel now hands payloads on in the pieces they arrived in (16 KiB TLS records), and a syscall
// per piece cost the Pi more than the copy it replaced. A real TCP service on 127.0.0.1.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { join } from '../src/ingress/pipe.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function service(): Promise<{ port: number; received: Promise<Buffer> }> {
  let resolve!: (b: Buffer) => void;
  const received = new Promise<Buffer>((r) => (resolve = r));
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const parts: Buffer[] = [];
    s.on('data', (c: Buffer) => parts.push(c));
    s.on('end', () => {
      resolve(Buffer.concat(parts));
      s.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => new Promise((r) => server.close(r)));
  return { port: (server.address() as AddressInfo).port, received };
}

describe('join: tunnel to service', () => {
  it('writes the pieces of one turn with one writev, and every byte arrives in order', async () => {
    const svc = await service();
    const socket = net.connect({ port: svc.port, host: '127.0.0.1', allowHalfOpen: true, ...{ writableHighWaterMark: 256 * 1024 } });
    await once(socket, 'connect');
    const writes: number[] = [];
    const origWritev = (socket as unknown as { _writev: (chunks: { chunk: Buffer }[], cb: () => void) => void })._writev.bind(socket);
    const origWrite = (socket as unknown as { _write: (chunk: Buffer, enc: string, cb: () => void) => void })._write.bind(socket);
    Object.assign(socket, {
      _writev: (chunks: { chunk: Buffer }[], cb: () => void) => {
        writes.push(chunks.length);
        origWritev(chunks, cb);
      },
      _write: (chunk: Buffer, enc: string, cb: () => void) => {
        writes.push(1);
        origWrite(chunk, enc, cb);
      },
    });
    const tunnel = new PassThrough({ highWaterMark: 1024 * 1024 });
    join(tunnel, socket);
    const pieces = Array.from({ length: 12 }, (_, i) => Buffer.alloc(16 * 1024, i + 1));
    for (const p of pieces) tunnel.write(p); // one turn, as a TLS read's records arrive
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(writes.reduce((a, b) => a + b, 0)).toBe(12); // every piece written...
    expect(writes.length).toBeLessThanOrEqual(2); // ...in one or two syscalls, not twelve
    tunnel.end(Buffer.from('tail'));
    expect(sha(await svc.received)).toBe(sha(Buffer.concat([...pieces, Buffer.from('tail')])));
  });
});
