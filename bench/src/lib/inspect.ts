// Reading a child Node process's memory after a full GC, through its inspector (the process
// runs with --inspect=127.0.0.1:0; the DevTools protocol over a WebSocket on 127.0.0.1).
import WebSocket from 'ws';
import type { ManagedProcess } from '@porthole/e2e/procs';

export interface MemoryAfterGc {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/** NODE_OPTIONS for a child whose memory is read this way. */
export const INSPECT_OPTIONS = '--inspect=127.0.0.1:0';

/** The inspector's URL of a process started with INSPECT_OPTIONS (read it soon after start: logs roll). */
export async function inspectorUrl(proc: ManagedProcess): Promise<string> {
  const line = await proc.waitForLog(/Debugger listening on ws:\/\//, 10_000);
  const url = /(ws:\/\/\S+)/.exec(line.text)?.[1];
  if (url === undefined) throw new Error(`no inspector URL in ${line.text}`);
  return url;
}

/** Forces a full GC in the process behind the inspector `url`, returns its process.memoryUsage(). */
export async function memoryAfterGc(url: string, timeoutMs = 30_000): Promise<MemoryAfterGc> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const timer = setTimeout(() => ws.terminate(), timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    let id = 0;
    const call = (method: string, params: Record<string, unknown> = {}) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const my = ++id;
        const onMessage = (data: Buffer) => {
          const m = JSON.parse(data.toString()) as { id?: number; result?: Record<string, unknown>; error?: { message: string } };
          if (m.id !== my) return;
          ws.off('message', onMessage);
          if (m.error) reject(new Error(`${method}: ${m.error.message}`));
          else resolve(m.result ?? {});
        };
        ws.on('message', onMessage);
        ws.once('close', () => reject(new Error(`inspector closed during ${method}`)));
        ws.send(JSON.stringify({ id: my, method, params }));
      });
    await call('HeapProfiler.collectGarbage');
    await call('HeapProfiler.collectGarbage');
    const r = await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
    const value = (r.result as { value?: string } | undefined)?.value;
    if (typeof value !== 'string') throw new Error('inspector: no memoryUsage answer');
    return JSON.parse(value) as MemoryAfterGc;
  } finally {
    clearTimeout(timer);
    ws.terminate();
  }
}
