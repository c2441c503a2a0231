import { parseArgs } from 'node:util';
import { detectCommand } from './commands/detect.js';
import { doctorCommand } from './commands/doctor.js';
import { pairCommand } from './commands/pair.js';
import { runCommand } from './commands/run.js';
import type { Command, CommandContext } from './commands/types.js';
import { ExitCode } from './supervisor/index.js';
import { AGENT_VERSION } from './version.js';

export type { Command, CommandContext } from './commands/types.js';

/** Subcommands. */
export const COMMANDS: Readonly<Record<string, Command>> = Object.freeze({
  run: runCommand,
  pair: pairCommand,
  detect: detectCommand,
  doctor: doctorCommand,
});

export function helpText(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  const list = Object.entries(COMMANDS)
    .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
    .join('\n');
  return `Usage: porthole-agent <command> [options]

Porthole agent ${AGENT_VERSION}: dials out to a Porthole relay and serves this printer's local web
UI and webcam through it.

Commands:
${list}

Options:
  -h, --help      show help (also: porthole-agent <command> --help)
  -v, --version   print the version

Run 'porthole-agent run --help' for the options of a command.
`;
}

export const defaultContext = (): CommandContext => ({
  env: process.env,
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  onSignal: (signals, handler) => {
    for (const s of signals) process.on(s, handler);
    return () => {
      for (const s of signals) process.off(s, handler);
    };
  },
});

/** Parses argv (without node and script) and runs a command; resolves the exit code. */
export async function main(argv: string[], ctx: CommandContext = defaultContext()): Promise<number> {
  const [first, ...rest] = argv;
  if (first !== undefined && !first.startsWith('-')) {
    const command = Object.prototype.hasOwnProperty.call(COMMANDS, first) ? COMMANDS[first] : undefined;
    if (command === undefined) {
      ctx.stderr(`porthole-agent: unknown command ${JSON.stringify(first)}\n\n${helpText()}`);
      return ExitCode.Usage;
    }
    return command.main(rest, ctx);
  }
  let values: { help?: boolean; version?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    ctx.stderr(`porthole-agent: ${(e as Error).message}\n\n${helpText()}`);
    return ExitCode.Usage;
  }
  if (values.version === true) {
    ctx.stdout(`${AGENT_VERSION}\n`);
    return ExitCode.Ok;
  }
  if (values.help === true) {
    ctx.stdout(helpText());
    return ExitCode.Ok;
  }
  ctx.stderr(helpText());
  return ExitCode.Usage;
}
