import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CONFIG_DEFAULTS, ConfigError, parseConfig } from '../config/index.js';
import {
  PairingAborted,
  PairingError,
  pollPairing,
  relayUrls,
  startPairing,
  type PairingEndpoint,
  type PollAnswer,
  type StartedPairing,
} from '../pairing/client.js';
import { detect, type Detection } from '../detect/index.js';
import { Backoff } from '../retry/index.js';
import { ExitCode } from '../supervisor/index.js';
import { AGENT_VERSION } from '../version.js';
import { describeProposal } from './detect.js';
import { CONFIG_ENV } from './run.js';
import type { Command, CommandContext } from './types.js';

/** Pairing did not happen: expired, denied, cancelled, or the relay could not be reached. */
export const EXIT_FAILED = 1;

const DEFAULT_SERVICE = Object.freeze({ name: 'ui', url: 'http://127.0.0.1:80' });

const usage = `Usage: porthole-agent pair --relay URL [options]

Pairs this printer with a Porthole relay: shows a short code, waits until the relay's owner
approves it (in the relay's dashboard, or with 'porthole-relay pair approve CODE --owner USER'),
then writes the agent config with the printer's new credential (mode 0600).

Options:
      --relay URL           the relay, e.g. https://relay.example (required)
  -c, --config PATH         config file to write (default: $${CONFIG_ENV} or ${CONFIG_DEFAULTS.configPath})
      --name NAME           the printer's name on the relay (default: this host's name)
      --service NAME=URL    a local service the relay may reach, e.g. ui=http://127.0.0.1:5000
                            (repeatable; default: the services already in the config, else what
                            'porthole-agent detect' finds, else ${DEFAULT_SERVICE.name}=${DEFAULT_SERVICE.url})
      --route PATH=NAME[,strip]
                            serve service NAME at PATH, e.g. /webcam/=webcam,strip (repeatable;
                            default: / to the "ui" service, or the first one)
      --ca FILE             extra CA certificate(s) for a relay signed by a private CA
      --force               replace a config that already has a credential
  -h, --help                show this help

Exit status: 0 paired, 1 not paired (expired, denied, cancelled, relay unreachable),
64 bad usage, 78 config problem.
`;

class UsageError extends Error {}

/** Test seams; the real command uses the defaults. */
export interface PairDeps {
  /** This host's name (default os.hostname()). */
  hostname?: () => string;
  /** Shortest time between two polls, whatever the relay answers (default 1 s). */
  minPollIntervalMs?: number;
  /** Backoff while the relay is unreachable (default 1 s doubling to 15 s, with jitter). */
  retryBaseMs?: number;
  retryCapMs?: number;
  /** Times the agent starts over with a new code when the relay forgot the pairing (default 3). */
  maxRestarts?: number;
  /** Finds the printer software when no service is given (default: probe this machine). */
  detect?: () => Promise<Detection>;
}

interface ServiceArg {
  url: string;
  profile?: string;
  passAuthorization?: boolean;
}
interface RouteArg {
  path: string;
  service: string;
  stripPrefix?: boolean;
}

/** `name=http://127.0.0.1:5000` */
function parseServiceArg(arg: string): [string, ServiceArg] {
  const eq = arg.indexOf('=');
  if (eq <= 0 || eq === arg.length - 1) throw new UsageError(`--service ${arg}: expected NAME=URL, e.g. ui=http://127.0.0.1:5000`);
  return [arg.slice(0, eq), { url: arg.slice(eq + 1) }];
}

/** `/webcam/=webcam,strip` (a path may itself hold '=', a service name never does). */
function parseRouteArg(arg: string): RouteArg {
  const eq = arg.lastIndexOf('=');
  if (eq <= 0 || eq === arg.length - 1) throw new UsageError(`--route ${arg}: expected PATH=SERVICE[,strip], e.g. /webcam/=webcam,strip`);
  const [service = '', ...flags] = arg.slice(eq + 1).split(',');
  for (const f of flags) if (f !== 'strip') throw new UsageError(`--route ${arg}: unknown flag "${f}" (only "strip")`);
  return { path: arg.slice(0, eq), service, ...(flags.includes('strip') ? { stripPrefix: true } : {}) };
}

/** Reads the config file already there, if any: undefined when there is none. Throws ConfigError when unreadable. */
function readExisting(file: string): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new ConfigError(`cannot read ${file}: ${code ?? (e as Error).message}`);
  }
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

const hasCredential = (c: Record<string, unknown> | undefined) => typeof c?.credential === 'string' && c.credential !== '';

/**
 * Writes `text` to `file` so that a reader sees the old file or the whole new one, never a part:
 * a temp file (mode 0600, same directory) written and fsynced, renamed over, the directory fsynced.
 */
export function writeFileAtomic(file: string, text: string): void {
  const dir = path.dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw e;
  }
  try {
    const d = openSync(dir, 'r');
    try {
      fsyncSync(d);
    } finally {
      closeSync(d);
    }
  } catch {
    /* some file systems cannot fsync a directory; the rename is done */
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(new PairingAborted());
      return;
    }
    const onAbort = () => {
      clearTimeout(t);
      reject(new PairingAborted());
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function isLoopback(base: string): boolean {
  const host = new URL(base).hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host.endsWith('.localhost') || host === '::1' || host.startsWith('127.');
}

function defaultName(hostname: () => string): string {
  const h = hostname().trim().slice(0, 100);
  return h === '' ? 'printer' : h;
}

function banner(started: StartedPairing, name: string, relay: string): string {
  const minutes = Math.max(1, Math.round(started.ttlMs / 60_000));
  const bar = '-'.repeat(started.code.length + 4);
  return `
Pairing "${name}" with ${relay}

    +${bar}+
    |  ${started.code}  |
    +${bar}+

Open ${started.approveUrl} and enter ${started.code}
(or, on the relay: porthole-relay pair approve ${started.code} --owner USERNAME)

Waiting for approval. The code expires in ${minutes} minute${minutes === 1 ? '' : 's'}; Ctrl-C cancels.
`;
}

export function createPairCommand(deps: PairDeps = {}): Command {
  const minPollIntervalMs = deps.minPollIntervalMs ?? 1_000;
  const maxRestarts = deps.maxRestarts ?? 3;

  async function main(args: string[], ctx: CommandContext): Promise<number> {
    const fail = (msg: string, code: number = EXIT_FAILED) => {
      ctx.stderr(`porthole-agent pair: ${msg}\n`);
      return code;
    };

    // ---- arguments ----
    let values: {
      relay?: string;
      config?: string;
      name?: string;
      service?: string[];
      route?: string[];
      ca?: string;
      force?: boolean;
      help?: boolean;
    };
    let services: Record<string, ServiceArg> | undefined;
    let routes: RouteArg[] | undefined;
    let urls: { http: string; ws: string };
    try {
      ({ values } = parseArgs({
        args,
        options: {
          relay: { type: 'string' },
          config: { type: 'string', short: 'c' },
          name: { type: 'string' },
          service: { type: 'string', multiple: true },
          route: { type: 'string', multiple: true },
          ca: { type: 'string' },
          force: { type: 'boolean' },
          help: { type: 'boolean', short: 'h' },
        },
        strict: true,
        allowPositionals: false,
      }));
      if (values.help === true) {
        ctx.stdout(usage);
        return ExitCode.Ok;
      }
      if (values.relay === undefined) throw new UsageError('--relay URL is required (e.g. --relay https://relay.example)');
      const u = relayUrls(values.relay);
      if ('error' in u) throw new UsageError(`--relay ${values.relay}: ${u.error}`);
      urls = u;
      if (values.service !== undefined) {
        services = {};
        for (const s of values.service) {
          const [name, svc] = parseServiceArg(s);
          if (Object.prototype.hasOwnProperty.call(services, name)) throw new UsageError(`--service ${name} given twice`);
          services[name] = svc;
        }
      }
      if (values.route !== undefined) routes = values.route.map(parseRouteArg);
      if (values.name !== undefined && values.name.trim() === '') throw new UsageError('--name must not be empty');
    } catch (e) {
      if (!(e instanceof UsageError) && (e as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS') !== true) throw e;
      ctx.stderr(`porthole-agent pair: ${(e as Error).message}\n\n${usage}`);
      return ExitCode.Usage;
    }

    // ---- the config to write, checked before anyone approves anything ----
    const configPath = path.resolve(values.config ?? (ctx.env[CONFIG_ENV] || CONFIG_DEFAULTS.configPath));
    const name = values.name?.trim() ?? defaultName(deps.hostname ?? os.hostname);
    let ca: Buffer | undefined;
    let draft: Record<string, unknown>;
    let defaulted = false;

    // No services given and none in the file: look at what runs on this machine.
    let detection: Detection | undefined;
    if (services === undefined && routes === undefined) {
      let existing: Record<string, unknown> | undefined;
      try {
        existing = readExisting(configPath);
      } catch {
        existing = undefined; // reported below
      }
      if (existing?.services === undefined || existing.routes === undefined) {
        detection = await (deps.detect ?? (() => detect()))();
      }
    }

    try {
      const existing = readExisting(configPath);
      if (hasCredential(existing) && values.force !== true) {
        return fail(`${configPath} already has a credential (this printer is paired). Use --force to pair again and replace it.`, ExitCode.Config);
      }
      // Keep what an installer or an earlier pairing put there; replace relay and credential.
      const kept: Record<string, unknown> = {};
      for (const k of ['services', 'routes', 'caFile', 'relayAddress', 'keepAlive', 'reconnect', 'logLevel']) {
        if (existing?.[k] !== undefined) kept[k] = existing[k];
      }
      if (services === undefined && routes === undefined && kept.services !== undefined && kept.routes !== undefined) {
        services = kept.services as Record<string, ServiceArg>;
        routes = kept.routes as RouteArg[];
      }
      const proposal = detection?.proposal;
      if (services === undefined && routes === undefined && proposal !== undefined) {
        services = proposal.services;
        routes = proposal.routes;
        defaulted = proposal.guess;
        ctx.stdout(`Found on this machine: ${proposal.summary}. The config will have:\n\n${describeProposal(proposal)}\n`);
      }
      if (services === undefined) {
        services = { [DEFAULT_SERVICE.name]: { url: DEFAULT_SERVICE.url } };
        defaulted = true;
      }
      if (routes === undefined) {
        const first = Object.prototype.hasOwnProperty.call(services, 'ui') ? 'ui' : Object.keys(services)[0]!;
        routes = [{ path: '/', service: first }];
      }
      const caFile = values.ca !== undefined ? path.resolve(values.ca) : (kept.caFile as string | undefined);
      if (caFile !== undefined) {
        try {
          ca = readFileSync(caFile);
        } catch (e) {
          throw new ConfigError(`cannot read the CA file ${caFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
      }
      draft = {
        relay: urls.ws,
        credential: '',
        services,
        routes,
        ...(caFile !== undefined ? { caFile } : {}),
        ...(kept.keepAlive !== undefined ? { keepAlive: kept.keepAlive } : {}),
        ...(kept.reconnect !== undefined ? { reconnect: kept.reconnect } : {}),
        ...(kept.logLevel !== undefined ? { logLevel: kept.logLevel } : {}),
      };
      // The agent's own parser, with a stand-in credential (no environment overrides: this is the file).
      parseConfig({ ...draft, credential: 'pdc_pending' });
      // Fail now, not after the owner approved, if the file cannot be written.
      mkdirSync(path.dirname(configPath), { recursive: true, mode: 0o700 });
      accessSync(path.dirname(configPath), constants.W_OK);
    } catch (e) {
      if (e instanceof ConfigError) return fail(e.message, ExitCode.Config);
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== undefined) return fail(`cannot write ${configPath}: ${code} (run as root, or pick --config PATH)`, ExitCode.Config);
      throw e;
    }

    if (!urls.http.startsWith('https:') && !isLoopback(urls.http)) {
      ctx.stderr(`porthole-agent pair: warning: ${urls.http} is not HTTPS: the credential will cross the network in clear\n`);
    }

    // ---- pair ----
    const endpoint: PairingEndpoint = { base: urls.http, ...(ca !== undefined ? { ca } : {}) };
    const abort = new AbortController();
    const off = ctx.onSignal(['SIGINT', 'SIGTERM'], () => abort.abort());
    let approved: Extract<PollAnswer, { status: 'approved' }>;
    try {
      const result = await pairLoop(endpoint, name, urls.http, abort.signal, ctx);
      if (typeof result === 'number') return result;
      approved = result;
    } finally {
      off();
    }

    // ---- write the config ----
    const final = { ...draft, credential: approved.credential };
    try {
      parseConfig(final);
      const again = readExisting(configPath);
      if (hasCredential(again) && values.force !== true) throw new ConfigError(`${configPath} got a credential while pairing`);
      writeFileAtomic(configPath, `${JSON.stringify(final, null, 2)}\n`);
    } catch (e) {
      const why = e instanceof ConfigError ? e.message : ((e as NodeJS.ErrnoException).code ?? (e as Error).message);
      return fail(
        `the relay paired this printer as "${approved.name}" (${approved.slug}), but writing ${configPath} failed: ${why}. ` +
          'Remove that device on the relay and pair again.',
        ExitCode.Config,
      );
    }

    const svcLines = (Object.entries(services) as [string, ServiceArg][]).map(([n, s]) => {
      const at = routes.filter((r) => r.service === n).map((r) => r.path);
      return `  ${n} -> ${s.url}${at.length > 0 ? ` at ${at.join(', ')}` : ''}`;
    });
    ctx.stdout(
      `\nPaired: this printer is "${approved.name}" (${approved.slug}) on the relay.\n` +
        `Wrote ${configPath} (mode 0600). Services:\n${svcLines.join('\n')}\n`,
    );
    if (defaulted) {
      ctx.stdout(
        `\nThat is a ${detection?.proposal?.guess === true ? 'guess' : 'default'}: edit "services" in ${configPath} so it points at this printer's web UI\n` +
          '(OctoPrint usually http://127.0.0.1:5000, Mainsail/Fluidd and PrusaLink port 80, a webcam\n' +
          'streamer often :8080 at /webcam/), or pair again with --service and --route.\n',
      );
    }
    ctx.stdout(`\nStart the agent: porthole-agent run --config ${configPath}\n(or, when installed as a service: sudo systemctl restart porthole-agent)\n`);
    return ExitCode.Ok;
  }

  /** Starts (and, when the relay forgot the pairing, restarts) and polls until there is an outcome. */
  async function pairLoop(
    endpoint: PairingEndpoint,
    name: string,
    relay: string,
    signal: AbortSignal,
    ctx: CommandContext,
  ): Promise<Extract<PollAnswer, { status: 'approved' }> | number> {
    const fail = (msg: string) => {
      ctx.stderr(`porthole-agent pair: ${msg}\n`);
      return EXIT_FAILED;
    };
    try {
      for (let restarts = 0; ; restarts++) {
        let started: StartedPairing;
        try {
          started = await startPairing(endpoint, { name, agent: AGENT_VERSION }, { signal });
        } catch (e) {
          if (e instanceof PairingError) return fail(e.message);
          throw e;
        }
        ctx.stdout(banner(started, name, relay));

        // A safety net only: the relay says "expired" itself. Slack for a relay that is down at the end.
        const deadline = Date.now() + started.ttlMs + 30_000;
        const backoff = new Backoff({ baseMs: deps.retryBaseMs ?? 1_000, capMs: deps.retryCapMs ?? 15_000 });
        let lost = false;
        let answer: PollAnswer | undefined;
        while (answer === undefined) {
          if (Date.now() > deadline) return fail('the code expired before anyone approved it. Run porthole-agent pair again for a new one.');
          const polledAt = Date.now();
          let a: PollAnswer;
          try {
            a = await pollPairing(endpoint, { pairingId: started.pairingId, pollToken: started.pollToken }, { signal });
          } catch (e) {
            if (!(e instanceof PairingError)) throw e;
            if (!e.transient) return fail(e.message);
            if (!lost) ctx.stderr(`porthole-agent pair: ${e.message}; still trying...\n`);
            lost = true;
            await sleep(Math.max(e.retryAfterMs ?? 0, backoff.next()), signal);
            continue;
          }
          if (lost) ctx.stderr('porthole-agent pair: reached the relay again, still waiting for approval\n');
          lost = false;
          backoff.reset();
          if (a.status === 'pending') {
            const wait = minPollIntervalMs - (Date.now() - polledAt);
            if (wait > 0) await sleep(wait, signal);
            continue;
          }
          answer = a;
        }
        switch (answer.status) {
          case 'approved':
            return answer;
          case 'expired':
            return fail('the code expired before anyone approved it. Run porthole-agent pair again for a new one.');
          case 'denied':
            return fail('the relay refused this pairing (denied). Nothing was written.');
          case 'unknown':
            if (restarts >= maxRestarts) return fail('the relay keeps forgetting the pairing; giving up.');
            ctx.stdout('\nThe relay no longer knows that code (it probably restarted). Starting over with a new code.\n');
            break;
        }
      }
    } catch (e) {
      if (e instanceof PairingAborted) return fail('cancelled; nothing was written.');
      throw e;
    }
  }

  return { summary: 'pair this printer with a relay: show a code, wait for approval, write the config', usage, main };
}

export const pairCommand: Command = createPairCommand();
