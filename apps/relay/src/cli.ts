#!/usr/bin/env node
// porthole-relay: run the relay, apply migrations, manage devices.
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadConfig, type RelayConfig } from './config.js';
import { openDatabase, type Database } from './db/index.js';
import { DeviceStore, type Device } from './devices.js';
import { isRelayError, RelayError } from './errors.js';
import { createLogger } from './log.js';

const USAGE = `Usage: porthole-relay [--config PATH] <command>

Commands:
  start                              run the relay
  migrate                            apply database migrations and exit
  device add --name NAME [--slug SLUG] [--json]
                                     add a device; prints its credential (once) and an agent config
  device list [--json]               list devices
  device revoke SLUG                 revoke a device's credential (it can no longer connect)
  device remove SLUG                 delete a device

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
      for (const k of ['name', 'slug', 'json'] as const) {
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
      case 'device':
        return await device(sub, rest, values, flags, config);
      case undefined:
        throw new UsageError('missing command');
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (e) {
    if (e instanceof UsageError) return usage(e.message);
    if (isRelayError(e)) {
      err(`porthole-relay: ${e.message}`);
      return 1;
    }
    // System errors (EADDRINUSE, EACCES…) say enough in their message; anything else is a bug.
    const sys = typeof (e as NodeJS.ErrnoException).code === 'string';
    err(`porthole-relay: ${sys ? (e as Error).message : ((e as Error).stack ?? String(e))}`);
    return 1;
  }
}

type Values = { name?: string; slug?: string; json?: boolean };

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
      flags(['name', 'slug', 'json']);
      if (rest.length) throw new UsageError(`unexpected argument ${rest[0]}`);
      if (values.name === undefined) throw new UsageError('device add needs --name NAME');
      const c = config();
      return withDatabase(c, async (db) => {
        const store = new DeviceStore(db);
        const { device, credential } = await store.create({ name: values.name!, slug: values.slug });
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
