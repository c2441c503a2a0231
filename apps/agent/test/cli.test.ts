import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log.js';
import { main, type CommandContext } from '../src/main.js';
import { AGENT_VERSION } from '../src/version.js';
import { CREDENTIAL, FakeRelay, until } from './helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function context(env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const logs: string[] = [];
  const handlers = new Map<string, (s: NodeJS.Signals) => void>();
  const ctx: CommandContext = {
    env,
    stdout: (t) => out.push(t),
    stderr: (t) => err.push(t),
    logDestination: new Writable({
      write(chunk: Buffer, _e, cb) {
        logs.push(chunk.toString());
        cb();
      },
    }),
    onSignal: (signals, handler) => {
      for (const s of signals) handlers.set(s, handler);
      return () => {
        for (const s of signals) handlers.delete(s);
      };
    },
  };
  return {
    ctx,
    out: () => out.join(''),
    err: () => err.join(''),
    logs: () => logs.join(''),
    msgs: () => logs.join('').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { msg: string }).msg),
    signal: (s: NodeJS.Signals) => handlers.get(s)?.(s),
    handlers,
  };
}

const dir = mkdtempSync(join(tmpdir(), 'porthole-agent-cli-'));
function configFile(name: string, content: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(content));
  return path;
}
const goodConfig = (relay: string, credential = CREDENTIAL) => ({
  relay,
  credential,
  services: { ui: { url: 'http://127.0.0.1:5000' } },
  routes: [{ path: '/', service: 'ui' }],
});

describe('porthole-agent CLI', () => {
  it('--version prints the package version', async () => {
    const c = context();
    expect(await main(['--version'], c.ctx)).toBe(0);
    expect(c.out()).toBe(`${AGENT_VERSION}\n`);
    expect(AGENT_VERSION).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('--help lists the commands; run --help shows its options', async () => {
    const c = context();
    expect(await main(['--help'], c.ctx)).toBe(0);
    expect(c.out()).toContain('Usage: porthole-agent <command>');
    expect(c.out()).toMatch(/\n {2}run +connect to the relay/);
    const r = context();
    expect(await main(['run', '--help'], r.ctx)).toBe(0);
    expect(r.out()).toContain('--config PATH');
    expect(r.out()).toContain('/etc/porthole/agent.json');
  });

  it('bad usage exits 64', async () => {
    for (const argv of [[], ['launch'], ['--frobnicate'], ['run', '--nope'], ['run', 'extra']]) {
      const c = context();
      expect(await main(argv, c.ctx), argv.join(' ')).toBe(64);
      expect(c.err()).not.toBe('');
    }
  });

  it('an invalid or missing config exits 78 and names the problem', async () => {
    const missing = context();
    expect(await main(['run', '--config', join(dir, 'absent.json')], missing.ctx)).toBe(78);
    expect(missing.err()).toContain('absent.json: ENOENT');

    const bad = context();
    const path = configFile('bad.json', { ...goodConfig('wss://relay.example'), services: { ui: { url: 'http://8.8.8.8:80' } } });
    expect(await main(['run', '-c', path], bad.ctx)).toBe(78);
    expect(bad.err()).toContain('services.ui.url: must be http://host:port');

    const fromEnv = context({ PORTHOLE_AGENT_CONFIG: path });
    expect(await main(['run'], fromEnv.ctx)).toBe(78);
    expect(fromEnv.err()).toContain('bad.json');
  });

  it('run exits 78 when the relay refuses the credential, and never logs it', async () => {
    const relay = await FakeRelay.start();
    cleanups.push(() => relay.close());
    const path = configFile('wrong.json', goodConfig(relay.url.replace('ws:', 'http:'), 'pdc_not_the_right_one'));
    const c = context();
    expect(await main(['run', '--config', path], c.ctx)).toBe(78);
    expect(c.msgs()).toEqual(['agent starting', 'credential refused — not retrying', 'agent stopped']);
    expect(c.logs()).not.toContain('pdc_not_the_right_one');
    expect(c.handlers.size).toBe(0); // signal handlers removed
  });

  it('run takes PORTHOLE_CREDENTIAL over the file and stops cleanly on SIGTERM', async () => {
    const relay = await FakeRelay.start();
    cleanups.push(() => relay.close());
    const path = configFile('envcred.json', goodConfig(relay.url, 'pdc_stale'));
    const c = context({ PORTHOLE_CREDENTIAL: CREDENTIAL });
    const code = main(['run', '--config', path], c.ctx);
    await until(() => c.msgs().includes('tunnel connected'));
    expect(relay.upgrades[0]!.authorization).toBe(`Bearer ${CREDENTIAL}`);
    c.signal('SIGTERM');
    expect(await code).toBe(0);
    expect(c.msgs().slice(-2)).toEqual(['shutting down', 'agent stopped']);
    expect(c.logs()).not.toContain(CREDENTIAL);
  });
});

describe('logger', () => {
  it('redacts the credential wherever it is logged', () => {
    const lines: string[] = [];
    const logger = createLogger({
      destination: new Writable({
        write(chunk: Buffer, _e, cb) {
          lines.push(chunk.toString());
          cb();
        },
      }),
    });
    logger.info({ credential: 'pdc_s1', config: { credential: 'pdc_s2' }, headers: { authorization: 'Bearer pdc_s3' } }, 'x');
    logger.info({ req: { headers: { authorization: 'Bearer pdc_s4' } } }, 'y');
    const text = lines.join('');
    for (const s of ['pdc_s1', 'pdc_s2', 'pdc_s3', 'pdc_s4']) expect(text).not.toContain(s);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'info', msg: 'x', credential: '[redacted]' });
  });
});
