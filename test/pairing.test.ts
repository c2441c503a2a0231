// Pairing end to end with the built programs: `porthole-agent pair` against a running relay,
// approved with `porthole-relay pair approve` (over the relay's admin socket), then
// `porthole-agent run` with the config the pairing wrote.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  agentCli,
  relayCommand,
  spawnManaged,
  startAgent,
  startRelay,
  stopAll,
  tempDir,
  type ManagedProcess,
  type RelayProcess,
} from './src/procs.js';

let relay: RelayProcess;

/** Adds an account straight into the relay's database (the owner a pairing needs). */
function addUser(dataDir: string, username: string): void {
  const db = new BetterSqlite3(join(dataDir, 'porthole.db'), { timeout: 5_000 });
  try {
    db.prepare('INSERT INTO "User" ("id", "username", "passwordHash") VALUES (?, ?, ?)').run(randomUUID(), username, '$argon2id$not-a-real-hash');
  } finally {
    db.close();
  }
}

function agentPair(args: string[]): ManagedProcess {
  return spawnManaged('agent-pair', process.execPath, [agentCli, 'pair', ...args], { env: { ...process.env } });
}

const CODE_LINE = /^Open (\S+) and enter ([0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4})$/;

async function shownCode(p: ManagedProcess, fresh = false): Promise<{ code: string; approveUrl: string }> {
  const line = await p.waitForLog(CODE_LINE, 15_000, fresh);
  const m = CODE_LINE.exec(line.text)!;
  return { approveUrl: m[1]!, code: m[2]! };
}

/** The relay CLI, not failing on a non-zero exit. */
function relayCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [relay.cli, ...args], { env: relay.env, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  relay = await startRelay();
  addUser(relay.dataDir, 'alice');
});

afterAll(async () => {
  await stopAll();
});

describe('pairing', () => {
  it('pairs with a code, writes a 0600 config, and the agent connects with it', async () => {
    const dir = await tempDir('porthole-pair-', true);
    const configPath = join(dir, 'etc', 'porthole', 'agent.json');
    const pair = agentPair(['--relay', relay.url, '--config', configPath, '--name', 'E2E Printer', '--service', 'ui=http://127.0.0.1:5000']);
    const { code, approveUrl } = await shownCode(pair);
    // The relay's publicUrl (with port 0 in tests it names no real port): only the path matters here.
    expect(approveUrl).toMatch(new RegExp(`^http://localhost:\\d+/app/pair\\?code=${code}$`));

    const list = JSON.parse((await relayCommand(relay, ['pair', 'list', '--json'])).stdout) as Array<{ code: string; name: string }>;
    expect(list).toEqual([expect.objectContaining({ code, name: 'E2E Printer' })]);

    const approved = await relayCommand(relay, ['pair', 'approve', code.toLowerCase().replace('-', ''), '--owner', 'alice', '--slug', 'e2e', '--json']);
    expect(JSON.parse(approved.stdout)).toMatchObject({ slug: 'e2e', name: 'E2E Printer' });

    expect(await pair.waitExit(15_000)).toEqual({ code: 0, signal: null });
    expect(pair.findLogs(/Paired: this printer is "E2E Printer" \(e2e\)/)).toHaveLength(1);
    expect(statSync(configPath).mode & 0o777).toBe(0o600);
    expect(statSync(join(configPath, '..')).mode & 0o777).toBe(0o700);

    const devices = JSON.parse((await relayCommand(relay, ['device', 'list', '--json'])).stdout) as Array<{ slug: string }>;
    expect(devices.map((d) => d.slug)).toContain('e2e');

    const agent = await startAgent({ configPath });
    expect(agent.findLogs('tunnel connected')).toHaveLength(1);
    await agent.close();
  });

  it('exits 1 when the code is denied, and approving an unknown code fails clearly', async () => {
    const dir = await tempDir('porthole-pair-', true);
    const configPath = join(dir, 'agent.json');
    const pair = agentPair(['--relay', relay.url, '--config', configPath]);
    const { code } = await shownCode(pair);

    const denied = await relayCli(['pair', 'deny', code]);
    expect(denied.code).toBe(0);
    expect(await pair.waitExit(15_000)).toEqual({ code: 1, signal: null });
    expect(pair.findLogs(/denied/)).not.toHaveLength(0);
    expect(() => statSync(configPath)).toThrow();

    const again = await relayCli(['pair', 'approve', code, '--owner', 'alice']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`No pending pairing with code "${code}"`);

    const noOwner = await relayCli(['pair', 'approve', 'ZZZZ-ZZZZ']);
    expect(noOwner.code).toBe(2);
    expect(noOwner.stderr).toContain('--owner');
  });

  it('starts over with a new code when the relay restarts', async () => {
    const dir = await tempDir('porthole-pair-', true);
    const configPath = join(dir, 'agent.json');
    const own = await startRelay();
    addUser(own.dataDir, 'bob');
    const pair = agentPair(['--relay', own.url, '--config', configPath]);
    const first = await shownCode(pair);

    await own.stop();
    const again = await startRelay({ dataDir: own.dataDir, port: own.port });
    const second = await shownCode(pair, true);
    expect(second.code).not.toBe(first.code);
    expect(pair.findLogs(/Starting over with a new code/)).toHaveLength(1);

    await relayCommand(again, ['pair', 'approve', second.code, '--owner', 'bob']);
    expect(await pair.waitExit(15_000)).toEqual({ code: 0, signal: null });
    await again.close();
  });

  it('says the relay is not running when there is no admin socket', async () => {
    const dir = await tempDir('porthole-relay-', true);
    const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, [relay.cli, 'pair', 'list'], { env: { ...relay.env, PORTHOLE_DATA_DIR: dir } }, (err, _out, stderr) =>
        resolve({ code: err === null ? 0 : Number(err.code), stderr }),
      );
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the relay is not running');
  });
});
