import { EventEmitter } from 'node:events';
import type { Stream } from '@porthole/protocol';
import { realClock, type Clock } from '../clock.js';
import { TransientError, TunnelErrorCode, type Tunnel, type TunnelError } from '../connection/index.js';
import { LogField, type Logger } from '../log.js';
import { Backoff, type BackoffOptions } from '../retry/index.js';
import { Mailbox } from './mailbox.js';

/** Process exit codes (sysexits.h). A unit file should not restart on 78. */
export const ExitCode = Object.freeze({
  Ok: 0,
  Usage: 64,
  Software: 70,
  /** Bad config, or the relay refused the credential: restarting cannot help. */
  Config: 78,
});

/** Makes one tunnel; rejects with PermanentError or TransientError. */
export type Dialer = (opts: { signal: AbortSignal; onStream: (stream: Stream) => void }) => Promise<Tunnel>;

export interface SupervisorOptions {
  dial: Dialer;
  /** Every stream the relay opens, on any tunnel. */
  onStream: (stream: Stream) => void;
  logger: Logger;
  /** For log lines. */
  relay: string;
  /** Backoff timers and the drain bound run on it; tests pass a fake one. */
  clock?: Clock;
  random?: () => number;
  backoff?: Omit<BackoffOptions, 'clock' | 'random'>;
  /** On shutdown, how long open streams may take to finish. */
  drainTimeoutMs?: number;
}

export const SUPERVISOR_DEFAULTS = Object.freeze({
  drainTimeoutMs: 5_000,
  /** A Retry-After beyond this is not honoured as such. */
  maxRetryAfterMs: 15 * 60_000,
});

export interface SupervisorEvents {
  connected: [info: { conn: number; relay: string; rtt: number | undefined }];
  /** A dial failed (`conn` undefined), an established tunnel ended, or the relay sent GoAway (`draining`). */
  disconnected: [info: { conn: number | undefined; error: TunnelError; draining: boolean }];
  reconnecting: [info: { delayMs: number; attempt: number }];
  stopped: [info: { exitCode: number; reason: string }];
}

type Event =
  | { type: 'connected'; tunnel: Tunnel }
  /** `tunnel` undefined: the dial failed. `draining`: GoAway received, the tunnel lives on for its streams. */
  | { type: 'disconnected'; tunnel: Tunnel | undefined; error: TunnelError; draining: boolean }
  | { type: 'timer'; kind: 'backoff' | 'drain' }
  | { type: 'shutdown'; signal: string };

/**
 * Keeps one tunnel to the relay up. One loop over four events — connected, disconnected, timer,
 * shutdown — and all state is touched only in that loop. A refused credential stops it for good
 * (exit 78); anything else is retried with exponential backoff and full jitter. On GoAway the next
 * tunnel is dialled at once while the old one finishes its streams.
 */
export class Supervisor extends EventEmitter<SupervisorEvents> {
  private readonly opts: SupervisorOptions;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly backoff: Backoff;
  private readonly drainTimeoutMs: number;
  private readonly mailbox = new Mailbox<Event>();
  private readonly conns = new Map<Tunnel, number>();

  private current: Tunnel | undefined;
  private readonly draining = new Set<Tunnel>();
  private dialing: AbortController | undefined;
  private backoffTimer: unknown;
  private drainTimer: unknown;
  private stopping = false;
  private result: { exitCode: number; reason: string } | undefined;
  private started = false;
  private connSeq = 0;

  constructor(opts: SupervisorOptions) {
    super();
    this.opts = opts;
    this.log = opts.logger;
    this.clock = opts.clock ?? realClock;
    this.backoff = new Backoff({ ...opts.backoff, clock: this.clock, ...(opts.random ? { random: opts.random } : {}) });
    this.drainTimeoutMs = opts.drainTimeoutMs ?? SUPERVISOR_DEFAULTS.drainTimeoutMs;
  }

  /** The tunnel new streams arrive on, if any. */
  get tunnel(): Tunnel | undefined {
    return this.current;
  }

  /** Asks the loop to stop gracefully; a second call stops at once. Safe from a signal handler. */
  shutdown(signal = 'shutdown'): void {
    this.mailbox.push({ type: 'shutdown', signal });
  }

  /** Runs until shutdown (resolves 0) or a refused credential (resolves 78). Never rejects. */
  async run(): Promise<number> {
    if (this.started) throw new Error('Supervisor.run() called twice');
    this.started = true;
    this.startDial();
    while (this.result === undefined) {
      const ev = await this.mailbox.next();
      try {
        this.handle(ev);
      } catch (e) {
        this.log.error({ [LogField.err]: e }, 'supervisor bug');
        this.finish(ExitCode.Software, `internal error: ${(e as Error).message}`);
      }
    }
    const tunnels = [...this.draining, ...(this.current ? [this.current] : [])];
    this.current = undefined;
    this.draining.clear();
    await Promise.all(tunnels.map((t) => t.close()));
    const { exitCode, reason } = this.result;
    this.log.info({ [LogField.exitCode]: exitCode, [LogField.reason]: reason }, 'agent stopped');
    this.emit('stopped', { exitCode, reason });
    return exitCode;
  }

  // ---- the loop ----

  private handle(ev: Event): void {
    switch (ev.type) {
      case 'connected':
        return this.onConnected(ev.tunnel);
      case 'disconnected':
        return this.onDisconnected(ev.tunnel, ev.error, ev.draining);
      case 'timer':
        if (ev.kind === 'backoff') {
          this.backoffTimer = undefined;
          if (!this.stopping && this.current === undefined && this.dialing === undefined) this.startDial();
        } else {
          this.drainTimer = undefined;
          const streams = [...this.draining].reduce((n, t) => n + t.streams, 0);
          this.log.warn({ [LogField.streams]: streams }, 'drain timeout, resetting open streams');
          this.finish(ExitCode.Ok, 'shutdown (drain timeout)');
        }
        return;
      case 'shutdown':
        return this.onShutdown(ev.signal);
    }
  }

  private startDial(): void {
    const ac = new AbortController();
    this.dialing = ac;
    const conn = ++this.connSeq;
    this.opts.dial({ signal: ac.signal, onStream: this.opts.onStream }).then(
      (tunnel) => {
        this.conns.set(tunnel, conn);
        if (this.result !== undefined) {
          void tunnel.close(); // the loop is over: nobody will ever use it
          return;
        }
        this.mailbox.push({ type: 'connected', tunnel });
        void tunnel.goingAway.then(() =>
          this.mailbox.push({
            type: 'disconnected',
            tunnel,
            draining: true,
            error: new TransientError(TunnelErrorCode.RelayGoingAway, 'relay going away (GoAway)', { prompt: true }),
          }),
        );
        void tunnel.closed.then((error) => this.mailbox.push({ type: 'disconnected', tunnel, error, draining: false }));
      },
      (err: unknown) => {
        const error =
          err instanceof TransientError || (err as TunnelError | undefined)?.permanent === true
            ? (err as TunnelError)
            : new TransientError(TunnelErrorCode.Network, err instanceof Error ? err.message : String(err));
        this.mailbox.push({ type: 'disconnected', tunnel: undefined, error, draining: false });
      },
    );
  }

  private onConnected(tunnel: Tunnel): void {
    this.dialing = undefined;
    const conn = this.conns.get(tunnel)!;
    if (this.stopping) {
      tunnel.goAway();
      this.draining.add(tunnel);
      return;
    }
    this.current = tunnel;
    this.backoff.connected();
    const rtt = tunnel.rtt === undefined ? undefined : Math.round(tunnel.rtt * 10) / 10;
    this.log.info({ [LogField.relay]: this.opts.relay, [LogField.rtt]: rtt, [LogField.conn]: conn }, 'tunnel connected');
    this.emit('connected', { conn, relay: this.opts.relay, rtt });
  }

  private onDisconnected(tunnel: Tunnel | undefined, error: TunnelError, draining: boolean): void {
    const conn = tunnel === undefined ? undefined : this.conns.get(tunnel);
    const wasCurrent = tunnel !== undefined && tunnel === this.current;
    if (tunnel === undefined) {
      this.dialing = undefined;
    } else if (draining) {
      if (!wasCurrent) return; // GoAway on a tunnel we already left
      this.current = undefined;
      this.draining.add(tunnel);
    } else {
      if (wasCurrent) this.current = undefined;
      this.draining.delete(tunnel);
      this.conns.delete(tunnel);
    }

    if (error.permanent) {
      this.log.error(
        {
          [LogField.reason]: error.message,
          [LogField.code]: error.code,
          [LogField.status]: error.status,
          [LogField.closeCode]: error.closeCode,
          [LogField.conn]: conn,
        },
        'credential refused — not retrying',
      );
      this.emit('disconnected', { conn, error, draining });
      this.finish(ExitCode.Config, error.message);
      return;
    }
    if (this.stopping) {
      if (this.draining.size === 0 && this.current === undefined) this.finish(ExitCode.Ok, 'shutdown');
      return;
    }
    if (tunnel !== undefined && !wasCurrent) return; // an old, drained tunnel finally closed

    const fields = {
      [LogField.reason]: error.message,
      [LogField.code]: error.code,
      [LogField.status]: error.status,
      [LogField.closeCode]: error.closeCode,
      [LogField.conn]: conn,
    };
    if (tunnel === undefined) this.log.warn(fields, 'tunnel dial failed');
    else if (draining) this.log.info({ ...fields, [LogField.streams]: tunnel.streams }, 'tunnel draining');
    else this.log.warn(fields, 'tunnel disconnected');
    if (tunnel !== undefined) this.backoff.disconnected();
    this.emit('disconnected', { conn, error, draining });
    this.scheduleReconnect(error);
  }

  private scheduleReconnect(error: TunnelError): void {
    if (this.backoffTimer !== undefined || this.dialing !== undefined || this.current !== undefined) return;
    const prompt = error instanceof TransientError && error.prompt;
    // The relay asked us to move: go at once, but only once per stable period, so a relay that
    // keeps sending GoAway cannot make us spin.
    let delayMs = prompt && this.backoff.attempt === 0 ? (this.backoff.next(), 0) : this.backoff.next();
    if (error instanceof TransientError && error.retryAfterMs !== undefined) {
      delayMs = Math.max(delayMs, Math.min(error.retryAfterMs, SUPERVISOR_DEFAULTS.maxRetryAfterMs));
    }
    const attempt = this.backoff.attempt;
    this.log.info({ [LogField.delayMs]: delayMs, [LogField.attempt]: attempt }, `reconnecting in ${delayMs} ms`);
    this.emit('reconnecting', { delayMs, attempt });
    this.backoffTimer = this.clock.setTimeout(() => this.mailbox.push({ type: 'timer', kind: 'backoff' }), delayMs);
  }

  private onShutdown(signal: string): void {
    if (this.stopping) {
      this.log.warn({ [LogField.signal]: signal }, 'second signal, closing now');
      this.finish(ExitCode.Ok, `shutdown (${signal}, forced)`);
      return;
    }
    this.stopping = true;
    this.clock.clearTimeout(this.backoffTimer);
    this.backoffTimer = undefined;
    this.dialing?.abort();
    if (this.current !== undefined) {
      this.draining.add(this.current);
      this.current = undefined;
    }
    let streams = 0;
    for (const t of this.draining) {
      streams += t.streams;
      t.goAway();
    }
    this.log.info({ [LogField.signal]: signal, [LogField.streams]: streams }, 'shutting down');
    if (this.draining.size === 0) {
      this.finish(ExitCode.Ok, 'shutdown');
      return;
    }
    this.drainTimer = this.clock.setTimeout(() => this.mailbox.push({ type: 'timer', kind: 'drain' }), this.drainTimeoutMs);
  }

  private finish(exitCode: number, reason: string): void {
    if (this.result !== undefined) return;
    this.result = { exitCode, reason };
    this.stopping = true;
    this.clock.clearTimeout(this.backoffTimer);
    this.clock.clearTimeout(this.drainTimer);
    this.backoffTimer = undefined;
    this.drainTimer = undefined;
    this.dialing?.abort();
  }
}
