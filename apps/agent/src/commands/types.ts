import type { DestinationStream } from 'pino';

/** What a command may touch of the outside world; tests pass their own. */
export interface CommandContext {
  env: Readonly<Record<string, string | undefined>>;
  /** Human-readable output (help, version). */
  stdout: (text: string) => void;
  /** Human-readable errors, before a logger exists. */
  stderr: (text: string) => void;
  /** Where log lines go (default: stdout). */
  logDestination?: DestinationStream;
  /** Registers signal handlers; returns a function removing them. */
  onSignal: (signals: readonly NodeJS.Signals[], handler: (signal: NodeJS.Signals) => void) => () => void;
}

export interface Command {
  /** One line for the command list. */
  summary: string;
  /** Full help text. */
  usage: string;
  /** Resolves the exit code. */
  main(args: string[], ctx: CommandContext): Promise<number>;
}
