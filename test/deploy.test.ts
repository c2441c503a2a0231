// What ships to machines: the agent installer against a scratch root (no real system changes),
// the systemd units through systemd-analyze, shellcheck on the installer.
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { agentBundle, relayCommand, repoRoot, spawnManaged, startRelay, stopAll, tempDir } from './src/procs.js';

const INSTALL = join(repoRoot, 'deploy/agent/install.sh');
const AGENT_UNIT = join(repoRoot, 'deploy/agent/porthole-agent.service');
const RELAY_UNIT = join(repoRoot, 'deploy/relay/porthole-relay.service');

afterAll(async () => {
  await stopAll();
});

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 60_000, env: opts.env ?? process.env }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

const install = (args: string[], env?: NodeJS.ProcessEnv) => run('sh', [INSTALL, '--node', process.execPath, ...args], { env });

describe('systemd units', () => {
  /** A copy whose ExecStart names a program that exists here (verify checks it is executable). */
  async function verifiable(unit: string): Promise<string> {
    const dir = await tempDir('porthole-units-', true);
    const copy = join(dir, unit.split('/').pop()!);
    writeFileSync(
      copy,
      readFileSync(unit, 'utf8').replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`),
    );
    return copy;
  }

  it('systemd-analyze verify accepts both units, without a single warning', async () => {
    for (const unit of [AGENT_UNIT, RELAY_UNIT]) {
      const r = await run('systemd-analyze', ['verify', await verifiable(unit)]);
      expect({ unit, code: r.code, stderr: r.stderr.trim() }).toEqual({ unit, code: 0, stderr: '' });
    }
  });

  it('the check catches a broken unit (so a pass means something)', async () => {
    const copy = await verifiable(AGENT_UNIT);
    writeFileSync(copy, readFileSync(copy, 'utf8').replace('MemoryMax=96M', 'MemoryMax=lots\nRestrictEverything=yes'));
    const r = await run('systemd-analyze', ['verify', copy]);
    expect(r.stderr).toMatch(/Invalid memory limit 'lots'/);
    expect(r.stderr).toMatch(/Unknown key 'RestrictEverything'/);
  });

  const directives = (unit: string) => readFileSync(unit, 'utf8').split('\n').filter((l) => /^[A-Za-z]+=/.test(l));

  it('the agent runs as its own user, hardened, restarts but not after exit 78, within 96 MB', () => {
    const d = directives(AGENT_UNIT);
    for (const line of [
      'User=porthole',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ProtectHome=yes',
      'PrivateTmp=yes',
      'ReadOnlyPaths=/etc/porthole',
      'Restart=always',
      'RestartSec=5',
      'RestartPreventExitStatus=78',
      'MemoryMax=96M',
      'CapabilityBoundingSet=',
      'ExecStart=/usr/local/bin/porthole-agent run --config /etc/porthole/agent.json',
    ]) {
      expect(d).toContain(line);
    }
    expect(d.filter((l) => l.startsWith('ReadWritePaths='))).toEqual([]);
    expect(d.join('\n')).not.toMatch(/MemoryDenyWriteExecute|User=root/);
  });

  it('the relay binds 80/443 through one capability, not root, and writes only its data directory', () => {
    const d = directives(RELAY_UNIT);
    for (const line of [
      'User=porthole',
      'AmbientCapabilities=CAP_NET_BIND_SERVICE',
      'CapabilityBoundingSet=CAP_NET_BIND_SERVICE',
      'NoNewPrivileges=yes',
      'ProtectSystem=strict',
      'ProtectHome=yes',
      'PrivateTmp=yes',
      'ReadWritePaths=/var/lib/porthole',
      'Environment=PORTHOLE_DATA_DIR=/var/lib/porthole',
      'Restart=always',
      'RestartSec=5',
    ]) {
      expect(d).toContain(line);
    }
    expect(d.join('\n')).not.toMatch(/MemoryDenyWriteExecute|User=root/);
  });
});

describe('deploy/agent/install.sh', () => {
  it('is shellcheck-clean POSIX sh (and so are the relay\'s command wrapper and the Node 18 script)', async () => {
    const r = await run('shellcheck', ['-s', 'sh', INSTALL, join(repoRoot, 'deploy/relay/porthole-relay'), join(repoRoot, 'test/scripts/debian-node18.sh')]);
    expect({ code: r.code, out: r.stdout }).toEqual({ code: 0, out: '' });
    // and it does look: a bashism is reported
    const dir = await tempDir('porthole-sc-', true);
    writeFileSync(join(dir, 'bad.sh'), '#!/bin/sh\nif [[ -n "$1" ]]; then echo $1; fi\n');
    expect((await run('shellcheck', ['-s', 'sh', join(dir, 'bad.sh')])).code).not.toBe(0);
  });

  it('installs into a scratch root, upgrades in place keeping the config, and uninstalls', async () => {
    const root = await tempDir('porthole-root-', true);
    const first = await install(['--root', root, '--no-pair']);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/Installed the Porthole agent \d+\.\d+\.\d+ in .*\/usr\/local\/lib\/porthole/);

    const lib = join(root, 'usr/local/lib/porthole/porthole-agent.cjs');
    const bin = join(root, 'usr/local/bin/porthole-agent');
    const unit = join(root, 'etc/systemd/system/porthole-agent.service');
    expect(readFileSync(lib).equals(readFileSync(agentBundle))).toBe(true);
    expect(statSync(bin).mode & 0o777).toBe(0o755);
    // The wrapper names the final paths (not the scratch root) and the Node it was given.
    expect(readFileSync(bin, 'utf8')).toContain(`exec "${process.execPath}" "/usr/local/lib/porthole/porthole-agent.cjs" "$@"`);
    expect(readFileSync(unit, 'utf8')).toBe(readFileSync(AGENT_UNIT, 'utf8'));
    expect(statSync(join(root, 'etc/porthole')).mode & 0o777).toBe(0o750);
    // What was installed runs.
    const version = await run(process.execPath, [lib, '--version']);
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);

    // A paired config, then an upgrade (a newer bundle): the config is kept byte for byte.
    const config = join(root, 'etc/porthole/agent.json');
    const paired = `${JSON.stringify({ relay: 'wss://relay.example', credential: 'pdc_kept_0123456789', services: { ui: { url: 'http://127.0.0.1:5000' } }, routes: [{ path: '/', service: 'ui' }] }, null, 2)}\n`;
    writeFileSync(config, paired, { mode: 0o600 });
    chmodSync(config, 0o600);
    const newer = join(await tempDir('porthole-bundle-', true), 'porthole-agent.cjs');
    copyFileSync(agentBundle, newer);
    writeFileSync(newer, `${readFileSync(newer, 'utf8')}\n// a newer build\n`);
    // DESTDIR works as --root does; no --relay is needed once paired.
    const upgrade = await install(['--bundle', newer], { ...process.env, DESTDIR: root });
    expect(upgrade.stderr).toBe('');
    expect(upgrade.code).toBe(0);
    expect(upgrade.stdout).toContain('Already paired: keeping');
    expect(upgrade.stdout).toMatch(/Upgraded the Porthole agent \d+\.\d+\.\d+ -> \d+\.\d+\.\d+/);
    expect(readFileSync(lib, 'utf8')).toContain('// a newer build');
    expect(readFileSync(config, 'utf8')).toBe(paired);
    expect(statSync(config).mode & 0o777).toBe(0o600);

    // Uninstall keeps the config; --purge removes it.
    const removed = await install(['--root', root, '--uninstall']);
    expect(removed.code).toBe(0);
    expect(removed.stdout).toContain('Kept the config');
    for (const f of [lib, bin, unit]) expect(existsSync(f)).toBe(false);
    expect(readFileSync(config, 'utf8')).toBe(paired);
    const purged = await install(['--root', root, '--uninstall', '--purge']);
    expect(purged.code).toBe(0);
    expect(existsSync(join(root, 'etc/porthole'))).toBe(false);
  });

  it('refuses what it cannot do, with a reason', async () => {
    const root = await tempDir('porthole-root-', true);
    const noRelay = await install(['--root', root]);
    expect(noRelay.code).toBe(1);
    expect(noRelay.stderr).toContain('to pair, give the relay');
    const bad = await install(['--root', root, '--frobnicate']);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain('unknown option --frobnicate');
    const missing = await install(['--root', join(root, 'nope'), '--no-pair']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no such directory');
    const oldNode = await run('sh', [INSTALL, '--root', root, '--no-pair', '--node', '/bin/true']);
    expect(oldNode.code).toBe(1);
    expect(oldNode.stderr).toContain('Node.js 18 or newer is needed');
  });

  it('pairs while installing: shows the code, and writes a 0600 config once approved on the relay', async () => {
    const relay = await startRelay();
    await relayCommand(relay, ['user', 'add', '--username', 'maker', '--password-stdin'], 30_000, 'installer pairing test');
    const root = await tempDir('porthole-root-', true);
    mkdirSync(join(root, 'etc'));
    // The script alone, as a Pi downloads it from the relay: it fetches the bundle and the unit there too.
    const fetched = await relayGetFile(relay.port, '/download/agent/install.sh');
    expect(fetched.status).toBe(200);
    expect(fetched.body.equals(readFileSync(INSTALL))).toBe(true);
    const alone = join(await tempDir('porthole-dl-', true), 'install.sh');
    writeFileSync(alone, fetched.body);
    const proc = spawnManaged('install', 'sh', [
      alone, '--root', root, '--node', process.execPath, '--relay', relay.url,
      '--', '--name', 'Installed Pi', '--service', 'ui=http://127.0.0.1:5000',
    ]);
    const line = await proc.waitForLog(/and enter ([0-9A-Z]{4}-[0-9A-Z]{4})$/, 30_000);
    const code = /([0-9A-Z]{4}-[0-9A-Z]{4})$/.exec(line.text)![1]!;
    const approved = await relayCommand(relay, ['pair', 'approve', code, '--owner', 'maker', '--slug', 'installed', '--json']);
    expect(JSON.parse(approved.stdout)).toMatchObject({ slug: 'installed', name: 'Installed Pi' });
    expect(await proc.waitExit(30_000)).toEqual({ code: 0, signal: null });
    expect(proc.findLogs(/Installed the Porthole agent/)).toHaveLength(1);
    expect(proc.findLogs(`Downloading the agent from ${relay.url}/download/agent/ ...`)).toHaveLength(1);
    expect(readFileSync(join(root, 'usr/local/lib/porthole/porthole-agent.cjs')).equals(readFileSync(agentBundle))).toBe(true);
    expect(readFileSync(join(root, 'etc/systemd/system/porthole-agent.service'), 'utf8')).toBe(readFileSync(AGENT_UNIT, 'utf8'));
    const config = join(root, 'etc/porthole/agent.json');
    expect(statSync(config).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(config, 'utf8'))).toMatchObject({
      relay: `ws://127.0.0.1:${relay.port}`,
      credential: expect.stringMatching(/^pdc_/),
      services: { ui: { url: 'http://127.0.0.1:5000' } },
    });

    // Upgrading later needs no address: the relay in the config is where the new bundle comes from.
    const upgrade = await run('sh', [alone, '--root', root, '--node', process.execPath]);
    expect(upgrade.stderr).toBe('');
    expect(upgrade.stdout).toContain(`Downloading the agent from ${relay.url}/download/agent/ ...`);
    expect(upgrade.stdout).toContain('Already paired: keeping');
    expect(upgrade.code).toBe(0);
    await relay.close();
  });
});

function relayGetFile(port: number, path: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false, headers: { host: `localhost:${port}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}
