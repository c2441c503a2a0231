#!/usr/bin/env node
// porthole-relay: run the relay, apply migrations, manage devices.
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadConfig, sqliteFile, type RelayConfig } from './config.js';
import { openDatabase, type Database } from './db/index.js';
import { UserStore } from './accounts/users.js';
import { DeviceStore, type Device } from './devices.js';
import { isRelayError, RelayError } from './errors.js';
import { createLogger } from './log.js';
import { adminRequest, adminSocketPath, AdminSocketUnavailable, type AdminResponse } from './pairing/admin-socket.js';

const USAGE = `Usage: porthole-relay [--config PATH] <command>

Commands:
  start                              run the relay
  migrate                            apply database migrations and exit
  backup FILE                        copy the database to FILE, safe while the relay runs
                                     (SQLite's online backup; also keep session.key and tls/)
  device add --name NAME [--slug SLUG] [--owner USERNAME] [--json]
                                     add a device; prints its credential (once) and an agent config;
                                     --owner gives USERNAME the owner role (else nobody can open it)
  device list [--json]               list devices
  device revoke SLUG                 revoke a device's credential (it can no longer connect)
  device remove SLUG                 delete a device
  pair approve CODE --owner USERNAME [--name NAME] [--slug SLUG] [--json]
                                     approve the code an agent shows (porthole-agent pair):
                                     creates the device, owned by USERNAME; the agent gets
                                     its credential. Asks the running relay (same --config).
  pair deny CODE                     refuse a pairing code
  user add --username NAME [--admin] [--password-stdin]
                                     add an account; reads the password from stdin (or prompts)
  user list [--json]                 list accounts
  pair list [--json]                 list pairing codes waiting for approval

Options:
  --config PATH   JSON config file (default: $PORTHOLE_CONFIG); PORTHOLE_* variables override it
  --json          machine-readable output
  -h, --help      show this help

Exit status: 0 success, 1 failure, 2 usage error.`;

class UsageError extends Error {}

const out = (s: string) => process.stdout.write(`${s}\n`);
const err = (s: string) => process.stderr.write(`${s}\n`);

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        json: { type: 'boolean' },
        name: { type: 'string' },
        slug: { type: 'string' },
        owner: { type: 'string' },
        username: { type: 'string' },
        admin: { type: 'boolean' },
        'password-stdin': { type: 'boolean' },
      },
    });
  } catch (e) {
    return usage((e as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out(USAGE);
    return 0;
  }

  try {
    const [command, sub, ...rest] = positionals;
    const flags = (allowed: string[]) => {
      for (const k of ['name', 'slug', 'json', 'owner', 'username', 'admin', 'password-stdin'] as const) {
        if (values[k] !== undefined && !allowed.includes(k)) throw new UsageError(`--${k} does not apply to this command`);
      }
    };
    const noArgs = () => {
      if (sub !== undefined) throw new UsageError(`unexpected argument ${sub}`);
    };
    const config = () => loadConfig({ file: values.config });

    switch (command) {
      case 'start':
        flags([]);
        noArgs();
        return await start(config());
      case 'migrate':
        flags([]);
        noArgs();
        return await withDatabase(config(), async (db) => {
          const { applied, total } = db.migrations;
          out(applied.length ? `Applied ${applied.join(', ')}.` : `Database up to date (${total} migration${total === 1 ? '' : 's'}).`);
          return 0;
        });
      case 'backup': {
        flags([]);
        if (sub === undefined) throw new UsageError('backup needs FILE, e.g. porthole-relay backup /var/backups/porthole.db');
        if (rest.length) throw new UsageError(`unexpected argument ${rest[0]}`);
        const { backupDatabase } = await import('./ops/backup.js');
        const r = await backupDatabase(sqliteFile(config()), sub);
        out(`Backed up the database to ${r.file} (${r.bytes} bytes, ${r.ms} ms). Keep session.key and tls/ from the data directory with it.`);
        return 0;
      }
      case 'device':
        return await device(sub, rest, values, flags, config);
      case 'pair':
        return await pair(sub, rest, values, flags, config);
      case 'user':
        return await user(sub, rest, values, flags, config);
      case undefined:
        throw new UsageError('missing command');
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (e) {
    if (e instanceof UsageError) return usage(e.message);
    if (isRelayError(e) || e instanceof AdminSocketUnavailable) {
      err(`porthole-relay: ${e.message}`);
      return 1;
    }
    // System errors (EADDRINUSE, EACCES…) say enough in their message; anything else is a bug.
    const sys = typeof (e as NodeJS.ErrnoException).code === 'string';
    err(`porthole-relay: ${sys ? (e as Error).message : ((e as Error).stack ?? String(e))}`);
    return 1;
  }
}

type Values = {
  name?: string;
  slug?: string;
  json?: boolean;
  owner?: string;
  username?: string;
  admin?: boolean;
  'password-stdin'?: boolean;
};

async function device(
  sub: string | undefined,
  rest: string[],
  values: Values,
  flags: (allowed: string[]) => void,
  config: () => RelayConfig,
): Promise<number> {
  const one = (what: string): string => {
    const [slug, ...extra] = rest;
    if (slug === undefined) throw new UsageError(`expected ${what}`);
    if (extra.length) throw new UsageError(`unexpected argument ${extra[0]}`);
    return slug;
  };
  switch (sub) {
    case 'add': {
      flags(['name', 'slug', 'json', 'owner']);
      if (rest.length) throw new UsageError(`unexpected argument ${rest[0]}`);
      if (values.name === undefined) throw new UsageError('device add needs --name NAME');
      const c = config();
      return withDatabase(c, async (db) => {
        const store = new DeviceStore(db);
        const owner = values.owner === undefined ? null : await new UserStore({ prisma: db.prisma }).findByUsername(values.owner);
        if (values.owner !== undefined && owner === null) throw new RelayError('RELAY_PAIRING_OWNER', [values.owner]);
        const { device, credential } = await store.create({ name: values.name!, slug: values.slug });
        if (owner !== null) {
          await db.prisma.membership.create({ data: { userId: owner.id, deviceId: device.id, role: 'owner' } });
        }
        if (values.json) {
          out(JSON.stringify({ id: device.id, slug: device.slug, credential }));
          return 0;
        }
        out(`Added "${device.name}" as ${device.slug}: ${deviceUrl(c, device.slug)}`);
        out('');
        out('Its credential, shown only this once (the relay keeps only a hash):');
        out('');
        out(`  ${credential}`);
        out('');
        out('Agent config for the printer, e.g. /etc/porthole/agent.json (mode 0600):');
        out('');
        out(JSON.stringify(agentConfig(c, credential), null, 2));
        return 0;
      });
    }
    case 'list':
      flags(['json']);
      if (rest.length) throw new UsageError(`unexpected argument ${rest[0]}`);
      return withDatabase(config(), async (db) => {
        const devices = await new DeviceStore(db).list();
        if (values.json) out(JSON.stringify(devices));
        else if (devices.length === 0) out('No devices. Add one with: porthole-relay device add --name NAME');
        else out(table(devices));
        return 0;
      });
    case 'revoke': {
      flags([]);
      const slug = one('SLUG');
      return withDatabase(config(), async (db) => {
        const store = new DeviceStore(db);
        const d = await bySlug(store, slug);
        await store.revoke(d.id);
        out(`Revoked ${slug}: its agent can no longer connect.`);
        return 0;
      });
    }
    case 'remove': {
      flags([]);
      const slug = one('SLUG');
      return withDatabase(config(), async (db) => {
        const store = new DeviceStore(db);
        const d = await bySlug(store, slug);
        await store.remove(d.id);
        out(`Removed ${slug}.`);
        return 0;
      });
    }
    case undefined:
      throw new UsageError('device needs a subcommand: add, list, revoke or remove');
    default:
      throw new UsageError(`unknown device subcommand "${sub}"`);
  }
}

/** `user …`: accounts. The password comes from stdin, never from the command line. */
async function user(
  sub: string | undefined,
  rest: string[],
  values: Values,
  flags: (allowed: string[]) => void,
  config: () => RelayConfig,
): Promise<number> {
  if (rest.length) throw new UsageError(`unexpected argument ${rest[0]}`);
  switch (sub) {
    case 'add': {
      flags(['username', 'admin', 'password-stdin', 'json']);
      if (values.username === undefined) throw new UsageError('user add needs --username NAME');
      const password = await readPassword(values['password-stdin'] === true);
      return withDatabase(config(), async (db) => {
        const u = await new UserStore({ prisma: db.prisma }).create({ username: values.username!, password, isAdmin: values.admin === true });
        if (values.json) out(JSON.stringify({ id: u.id, username: u.username, isAdmin: u.isAdmin }));
        else out(`Added ${u.isAdmin ? 'admin ' : ''}${u.username}.`);
        return 0;
      });
    }
    case 'list':
      flags(['json']);
      return withDatabase(config(), async (db) => {
        const users = await new UserStore({ prisma: db.prisma }).list();
        if (values.json) out(JSON.stringify(users.map((u) => ({ id: u.id, username: u.username, isAdmin: u.isAdmin }))));
        else if (users.length === 0) out('No accounts yet. Start the relay and open its setup link, or: porthole-relay user add --admin --username NAME');
        else for (const u of users) out(`${u.username}${u.isAdmin ? ' (admin)' : ''}${u.disabledAt ? ' disabled' : ''}`);
        return 0;
      });
    case undefined:
      throw new UsageError('user needs a subcommand: add or list');
    default:
      throw new UsageError(`unknown user subcommand "${sub}"`);
  }
}

/** Reads a password from stdin (piped), or asks for it on a terminal without echo. */
async function readPassword(fromStdin: boolean): Promise<string> {
  if (fromStdin || !process.stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    const pw = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
    if (pw.length === 0) throw new UsageError('no password on stdin');
    return pw;
  }
  const { createInterface } = await import('node:readline');
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  const mute = rl as unknown as { _writeToOutput: (s: string) => void };
  process.stderr.write('Password: ');
  mute._writeToOutput = () => undefined;
  const pw = await new Promise<string>((resolve) => rl.question('', resolve));
  rl.close();
  process.stderr.write('\n');
  return pw;
}

/** `pair …`: pending pairings live in the running relay's memory, so these ask it over its admin socket. */
async function pair(
  sub: string | undefined,
  rest: string[],
  values: Values,
  flags: (allowed: string[]) => void,
  config: () => RelayConfig,
): Promise<number> {
  const code = (): string => {
    const [c, ...extra] = rest;
    if (c === undefined) throw new UsageError('expected CODE (as the agent shows it, e.g. ABCD-EFGH)');
    if (extra.length) throw new UsageError(`unexpected argument ${extra[0]}`);
    return c;
  };
  const ask = async (request: Parameters<typeof adminRequest>[1]): Promise<AdminResponse & { ok: true }> => {
    const r = await adminRequest(adminSocketPath(config().dataDir), request);
    if (!r.ok) {
      err(`porthole-relay: ${r.message}`);
      throw new PairFailed();
    }
    return r;
  };
  try {
    switch (sub) {
      case 'approve': {
        flags(['name', 'slug', 'json', 'owner']);
        const c = code();
        if (values.owner === undefined) throw new UsageError('pair approve needs --owner USERNAME (the account that will own the printer)');
        const r = await ask({
          op: 'pair.approve',
          code: c,
          owner: values.owner,
          ...(values.name !== undefined ? { name: values.name } : {}),
          ...(values.slug !== undefined ? { slug: values.slug } : {}),
        });
        if (!('device' in r)) throw new Error('unexpected answer from the relay');
        if (values.json) out(JSON.stringify(r.device));
        else {
          out(`Approved: "${r.device.name}" is paired as ${r.device.slug} (${deviceUrl(config(), r.device.slug)}), owned by ${values.owner}.`);
          out('The agent receives its credential and writes its config now.');
        }
        return 0;
      }
      case 'deny': {
        flags([]);
        const c = code();
        const r = await ask({ op: 'pair.deny', code: c });
        out(`Denied ${'pairing' in r && r.pairing ? `${r.pairing.code} ("${r.pairing.name}" from ${r.pairing.remote})` : c}.`);
        return 0;
      }
      case 'list': {
        flags(['json']);
        if (rest.length) throw new UsageError(`unexpected argument ${rest[0]}`);
        const r = await ask({ op: 'pair.list' });
        const pairings = 'pairings' in r ? r.pairings : [];
        if (values.json) out(JSON.stringify(pairings));
        else if (pairings.length === 0) out('No pairing codes waiting. On the printer run: porthole-agent pair --relay URL');
        else {
          const all = [['CODE', 'NAME', 'FROM', 'AGENT', 'EXPIRES'], ...pairings.map((p) => [p.code, p.name, p.remote, p.agent, p.expiresAt])];
          const widths = all[0]!.map((_, i) => Math.max(...all.map((row) => row[i]!.length)));
          out(all.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n'));
        }
        return 0;
      }
      case undefined:
        throw new UsageError('pair needs a subcommand: approve, deny or list');
      default:
        throw new UsageError(`unknown pair subcommand "${sub}"`);
    }
  } catch (e) {
    if (e instanceof PairFailed) return 1;
    throw e;
  }
}

/** The relay refused the request and its message was printed. */
class PairFailed extends Error {}

async function bySlug(store: DeviceStore, slug: string): Promise<Device> {
  const d = await store.findBySlug(slug);
  if (!d) throw new RelayError('RELAY_DEVICE_NOT_FOUND', [slug]);
  return d;
}

/** Admin commands log to stderr, so stdout stays the command's output (and parseable with --json). */
async function withDatabase(config: RelayConfig, fn: (db: Database) => Promise<number>): Promise<number> {
  const log = createLogger(config, pino.destination(2));
  const db = await openDatabase(config, log);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}

async function start(config: RelayConfig): Promise<number> {
  const { startRelay } = await import('./server.js');
  const relay = await startRelay(config);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = () => {
      if (stopping) process.exit(130); // a second Ctrl-C: now
      stopping = true;
      // close() drains within shutdownGraceMs; this is the backstop if it hangs.
      setTimeout(() => {
        err('porthole-relay: shutdown took too long, exiting');
        process.exit(1);
      }, config.shutdownGraceMs + 5_000).unref();
      const done = (code: number) => {
        // Exit naturally; if a stray handle keeps the loop alive, exit anyway shortly after.
        setTimeout(() => process.exit(code), 1_000).unref();
        resolve(code);
      };
      relay.close().then(
        () => done(0),
        (e: unknown) => {
          err(`porthole-relay: error while shutting down: ${(e as Error).message}`);
          done(1);
        },
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

/** `http://mk3s.localhost:8080`: the public URL's scheme and port, the device's subdomain. */
function deviceUrl(config: RelayConfig, slug: string): string {
  const u = new URL(config.publicUrl);
  u.hostname = `${slug}.${config.domain}`;
  return u.origin;
}

/** What the agent needs to reach this relay as this device (apps/agent/src/config/schema.ts). */
function agentConfig(config: RelayConfig, credential: string) {
  return {
    relay: config.publicUrl.replace(/^http/, 'ws'),
    credential,
    services: {
      ui: { url: 'http://127.0.0.1:5000' },
      webcam: { url: 'http://127.0.0.1:8080' },
    },
    routes: [
      { path: '/', service: 'ui' },
      { path: '/webcam/', service: 'webcam', stripPrefix: true },
    ],
  };
}

function table(devices: Device[]): string {
  const rows = devices.map((d) => [d.slug, d.name, status(d), d.createdAt.toISOString()]);
  const all = [['SLUG', 'NAME', 'STATUS', 'CREATED'], ...rows];
  const widths = all[0]!.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

function status(d: Device): string {
  if (d.revokedAt) return `revoked ${d.revokedAt.toISOString()}`;
  if (!d.lastSeenAt) return 'never connected';
  if (d.offlineSince) return `offline since ${d.offlineSince.toISOString()}`;
  return `online since ${d.lastSeenAt.toISOString()}`;
}

function usage(message: string): number {
  err(`porthole-relay: ${message}`);
  err('Run porthole-relay --help for usage.');
  return 2;
}

process.exitCode = await main(process.argv.slice(2));
