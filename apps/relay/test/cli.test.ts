// The built CLI in real child processes (npm test builds first; alone: npm run build -w @porthole/relay).
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/db/index.js';
import { DeviceStore, type AuthResult } from '../src/devices.js';
import { memoryLogger, tempDir, testConfig } from './db-helpers.js';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('porthole-relay', () => {
  let tmp: ReturnType<typeof tempDir>;
  let dataDir: string;

  beforeAll(() => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build -w @porthole/relay first`);
  });
  beforeEach(() => {
    tmp = tempDir();
    dataDir = path.join(tmp.dir, 'data');
  });
  afterEach(() => tmp.cleanup());

  /** Only what we pass: nothing from the developer's own PORTHOLE_* environment. */
  const env = (extra: Record<string, string> = {}) => ({
    PATH: process.env.PATH ?? '',
    PORTHOLE_DATA_DIR: dataDir,
    PORTHOLE_LOG_LEVEL: 'warn',
    ...extra,
  });

  const cli = (args: string[], extra?: Record<string, string>): Promise<Result> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [CLI, ...args], { cwd: tmp.dir, env: env(extra) });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });

  /** Checks a credential against the database the CLI wrote, in this process. */
  const authenticate = async (credential: string): Promise<AuthResult> => {
    const db = await openDatabase(testConfig(dataDir), memoryLogger().log);
    try {
      return await new DeviceStore(db).authenticate(credential);
    } finally {
      await db.close();
    }
  };

  it('device add --json prints a credential the relay accepts', async () => {
    const r = await cli(['device', 'add', '--name', 'Prusa MK3S', '--slug', 'mk3s', '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { id: string; slug: string; credential: string };
    expect(Object.keys(out).sort()).toEqual(['credential', 'id', 'slug']);
    expect(out.slug).toBe('mk3s');
    expect(out.credential).toMatch(/^pdc_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);

    const auth = await authenticate(out.credential);
    expect(auth.ok && auth.device).toMatchObject({ id: out.id, slug: 'mk3s', name: 'Prusa MK3S' });
  });

  it('device add prints the credential once and an agent config to paste', async () => {
    const r = await cli(['device', 'add', '--name', 'Ender 3 V2'], { PORTHOLE_DOMAIN: 'relay.example', PORTHOLE_PUBLIC_URL: 'https://relay.example' });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('as ender-3-v2: https://ender-3-v2.relay.example');
    const credential = /pdc_\S+/.exec(r.stdout)![0];
    const config = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as Record<string, unknown>;
    expect(config).toMatchObject({ relay: 'wss://relay.example', credential });
    expect(config.services).toHaveProperty('ui');
    expect((await authenticate(credential)).ok).toBe(true);
  });

  it('lists, revokes and removes devices by slug', async () => {
    const added = JSON.parse((await cli(['device', 'add', '--name', 'A', '--slug', 'a', '--json'])).stdout) as { credential: string };
    await cli(['device', 'add', '--name', 'B', '--slug', 'b']);

    let r = await cli(['device', 'list']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^SLUG\s+NAME\s+STATUS\s+CREATED\n/);
    expect(r.stdout).toMatch(/\na\s+A\s+never connected/);
    expect(r.stdout).not.toContain('pdc_');

    r = await cli(['device', 'revoke', 'a']);
    expect(r.code).toBe(0);
    expect(await authenticate(added.credential)).toEqual({ ok: false, reason: 'revoked' });

    r = await cli(['device', 'list', '--json']);
    const list = JSON.parse(r.stdout) as { slug: string; revokedAt: string | null }[];
    expect(list.map((d) => [d.slug, d.revokedAt !== null])).toEqual([
      ['a', true],
      ['b', false],
    ]);
    expect(r.stdout).not.toContain('credentialHash');

    r = await cli(['device', 'remove', 'a']);
    expect(r.code).toBe(0);
    r = await cli(['device', 'remove', 'a']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('No device "a"');
    r = await cli(['device', 'revoke', 'zzz']);
    expect(r.code).toBe(1);
  });

  it('fails with status 1 and a clear message on bad input or config', async () => {
    let r = await cli(['device', 'add', '--name', 'A', '--slug', 'www']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Invalid slug "www": is reserved');
    await cli(['device', 'add', '--name', 'A', '--slug', 'a']);
    r = await cli(['device', 'add', '--name', 'A', '--slug', 'a']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('Slug "a" is already used');
    r = await cli(['device', 'list'], { PORTHOLE_PORT: 'eighty' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('port (from PORTHOLE_PORT)');
    r = await cli(['--config', 'missing.json', 'device', 'list']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('missing.json');
  });

  it.each([
    [[], 'missing command'],
    [['frob'], 'unknown command "frob"'],
    [['--frob'], "Unknown option '--frob'"],
    [['device'], 'device needs a subcommand'],
    [['device', 'frob'], 'unknown device subcommand'],
    [['device', 'add'], 'needs --name'],
    [['device', 'add', '--name'], "'--name <value>' argument missing"],
    [['device', 'revoke'], 'expected SLUG'],
    [['device', 'remove', 'a', 'b'], 'unexpected argument b'],
    [['device', 'list', '--slug', 'x'], '--slug does not apply'],
    [['migrate', 'now'], 'unexpected argument now'],
  ])('usage error %j exits 2', async (args, message) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stderr).toContain('--help');
    expect(r.stdout).toBe('');
  });

  it('--help prints usage and exits 0', async () => {
    const r = await cli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: porthole-relay');
    expect(r.stdout).toContain('device add --name NAME');
  });

  it('takes --config anywhere on the line', async () => {
    const file = path.join(tmp.dir, 'relay.json');
    writeFileSync(file, JSON.stringify({ dataDir: path.join(tmp.dir, 'from-file') }));
    const r = await cli(['device', '--config', file, 'add', '--name', 'A', '--json'], { PORTHOLE_DATA_DIR: '' });
    expect(r.code).toBe(0);
    expect(existsSync(path.join(tmp.dir, 'from-file', 'porthole.db'))).toBe(true);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('migrate applies the migrations once', async () => {
    let r = await cli(['migrate']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Applied \d{14}_/);
    r = await cli(['migrate']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Database up to date \(\d+ migrations?\)\./);
  });

  it('start runs the relay until SIGTERM, then exits 0', async () => {
    const child = spawn(process.execPath, [CLI, 'start'], { cwd: tmp.dir, env: env({ PORTHOLE_PORT: '0', PORTHOLE_LOG_LEVEL: 'info' }) });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const listening = await new Promise<Record<string, unknown>>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        for (const line of stdout.split('\n')) {
          if (!line.startsWith('{')) continue;
          const entry = JSON.parse(line) as Record<string, unknown>;
          if (entry.msg === 'relay listening') resolve(entry);
        }
      });
      child.on('close', (code) => reject(new Error(`exited ${code} before listening: ${stderr}${stdout}`)));
    });
    expect(listening.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const res = await fetch(`${String(listening.url)}/`, { headers: { host: 'localhost' } }).catch((e: Error) => e);
    expect(res).not.toBeInstanceOf(Error);

    const code = await new Promise<number | null>((resolve) => {
      child.on('close', resolve);
      child.kill('SIGTERM');
    });
    expect(code).toBe(0);
    expect(stdout).toContain('"msg":"relay stopped"');
  });
});
