// The idle timer of a tunnel stream dressed as a socket (http.Agent drops idle keep-alive
// streams with it). http.Agent calls setTimeout with the same value on every reuse; the timer
// must still measure idleness from the last activity, and a changed or cleared timeout applies.
import { once } from 'node:events';
import http from 'node:http';
import { memoryPair, type Stream } from '@porthole/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { asSocket } from '../src/tunnel/socket-like.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function pairStream(): Promise<{ relaySide: ReturnType<typeof asSocket>; agentSide: Stream }> {
  const { client, server } = memoryPair({ config: { keepAliveInterval: 0 } });
  cleanups.push(() => {
    client.close();
    server.close();
  });
  const accepted = once(client, 'stream') as Promise<[Stream]>;
  const s = server.openStream();
  const [agentSide] = await accepted;
  agentSide.on('error', () => undefined);
  s.on('error', () => undefined);
  return { relaySide: asSocket(s), agentSide };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('asSocket idle timeout', () => {
  it('fires once the stream has been idle for the timeout, counted from the last activity', async () => {
    const { relaySide, agentSide } = await pairStream();
    let fired = 0;
    relaySide.on('timeout', () => fired++);
    relaySide.setTimeout(300);
    expect(relaySide.timeout).toBe(300);
    // Keep it busy past the first deadline: bytes both ways and repeated same-value setTimeout
    // calls (what http.Agent does on reuse) must keep postponing it.
    for (let i = 0; i < 6; i++) {
      await sleep(100);
      relaySide.write(Buffer.from('x'));
      agentSide.write(Buffer.from('y'));
      relaySide.setTimeout(300);
    }
    relaySide.resume();
    expect(fired).toBe(0);
    const t0 = Date.now();
    await once(relaySide, 'timeout');
    // At least the timeout after the last activity (a little slack for timer granularity).
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    expect(fired).toBe(1);
  }, 20_000);

  it('a changed timeout applies at once, and 0 turns it off', async () => {
    const { relaySide } = await pairStream();
    let fired = 0;
    relaySide.on('timeout', () => fired++);
    relaySide.setTimeout(10_000);
    relaySide.setTimeout(100); // shorter: must not wait for the 10 s timer
    await once(relaySide, 'timeout');
    expect(fired).toBe(1);
    relaySide.setTimeout(100); // re-armed after it fired
    relaySide.setTimeout(0);
    expect(relaySide.timeout).toBe(0);
    await sleep(400);
    expect(fired).toBe(1);
  }, 20_000);

  it('follows net.Socket: a callback given with 0 is removed, not added', async () => {
    const { relaySide } = await pairStream();
    const cb = () => undefined;
    relaySide.setTimeout(1000, cb);
    expect(relaySide.listenerCount('timeout')).toBe(1);
    relaySide.setTimeout(0, cb);
    expect(relaySide.listenerCount('timeout')).toBe(0);
    expect(relaySide.timeout).toBe(0);
  });
});

describe('asSocket under http.Agent', () => {
  // Node's HTTP client adds a 'timeout' listener to the socket when a request begins and removes
  // it with setTimeout(0, listener) when the request ends on a kept-alive socket. Taking that 0 as
  // "add" grew the listeners by two per request on a busy stream, and the idle timeout, when it
  // finally fired, ran every one of them (a relay profile showed 7% of its time in removing them).
  it('keeps the listeners of a kept-alive stream bounded over many requests, and still drops it when idle', async () => {
    const { relaySide, agentSide } = await pairStream();
    const server = http.createServer((req, res) => {
      req.resume();
      res.end('ok');
    });
    server.emit('connection', agentSide);
    let opened = 0;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1, timeout: 300 });
    (agent as unknown as { createConnection: unknown }).createConnection = () => {
      opened++;
      return relaySide;
    };
    cleanups.push(() => {
      agent.destroy();
      server.close();
    });
    const get = () =>
      new Promise<string>((resolve, reject) => {
        const req = http.request({ agent, host: '127.0.0.1', port: 1, path: '/' }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve(body));
        });
        req.on('error', reject);
        req.end();
      });
    const counts: number[] = [];
    for (let i = 0; i < 200; i++) {
      expect(await get()).toBe('ok');
      counts.push(relaySide.listenerCount('timeout'));
    }
    expect(opened).toBe(1); // one stream carried all of them
    expect(Math.max(...counts)).toBe(counts[0]);
    expect(counts[0]).toBeLessThanOrEqual(2);
    // Idle past the agent's timeout: the agent destroys the free stream.
    await once(relaySide, 'close');
    expect(relaySide.destroyed).toBe(true);
  }, 20_000);
});
