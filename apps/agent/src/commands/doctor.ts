import { parseArgs } from 'node:util';
import { CONFIG_DEFAULTS } from '../config/index.js';
import { runDoctor, type CheckResult, type CheckSection } from '../doctor/index.js';
import { ExitCode } from '../supervisor/index.js';
import { CONFIG_ENV } from './run.js';
import type { Command, CommandContext } from './types.js';

/** Something is wrong (a check failed). */
export const EXIT_PROBLEMS = 1;

const usage = `Usage: porthole-agent doctor [--config PATH] [--json]

Checks what stands between this printer and your phone, and says what is wrong in plain words:
  - the config: valid, and readable by its owner only;
  - each local service: listening, and what it answers to GET /;
  - the relay: its name resolves, its port is reachable, its TLS certificate verifies, and it
    accepts this printer's credential (without disturbing a running agent's connection).

Options:
  -c, --config PATH   config file (default: $${CONFIG_ENV} or ${CONFIG_DEFAULTS.configPath})
      --json          print the results as JSON
      --timeout MS    per network step (default 5000)
  -h, --help          show this help

Exit status: 0 all good (warnings allowed), 1 problems found, 64 bad usage.
`;

const HEADINGS: Record<CheckSection, string> = { config: 'Config', services: 'Local services', relay: 'Relay' };
const MARK = { ok: 'ok  ', warn: 'warn', fail: 'FAIL', skip: 'skip' } as const;

async function main(args: string[], ctx: CommandContext): Promise<number> {
  let values: { config?: string; json?: boolean; timeout?: string; help?: boolean };
  let timeoutMs: number | undefined;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: 'string', short: 'c' },
        json: { type: 'boolean' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
    if (values.timeout !== undefined) {
      timeoutMs = Number(values.timeout);
      if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 120_000) throw new Error(`--timeout ${values.timeout}: milliseconds, 1 to 120000`);
    }
  } catch (e) {
    ctx.stderr(`porthole-agent doctor: ${(e as Error).message}\n\n${usage}`);
    return ExitCode.Usage;
  }
  if (values.help === true) {
    ctx.stdout(usage);
    return ExitCode.Ok;
  }
  const configPath = values.config ?? (ctx.env[CONFIG_ENV] || CONFIG_DEFAULTS.configPath);

  let section: CheckSection | undefined;
  const print = (r: CheckResult) => {
    if (values.json === true) return;
    if (r.section !== section) {
      section = r.section;
      ctx.stdout(`${section === 'config' ? '' : '\n'}${HEADINGS[section]}${section === 'config' ? ` ${configPath}` : ''}\n`);
    }
    ctx.stdout(`  ${MARK[r.status]}  ${r.text}\n`);
  };
  const results = await runDoctor({ configPath, env: ctx.env, ...(timeoutMs !== undefined ? { timeoutMs } : {}) }, print);
  const problems = results.filter((r) => r.status === 'fail').length;
  if (values.json === true) {
    ctx.stdout(`${JSON.stringify({ config: configPath, problems, results }, null, 2)}\n`);
  } else {
    ctx.stdout(problems === 0 ? '\nAll good.\n' : `\n${problems} problem${problems === 1 ? '' : 's'} found.\n`);
  }
  return problems === 0 ? ExitCode.Ok : EXIT_PROBLEMS;
}

export const doctorCommand: Command = {
  summary: 'check the config, the local services and the relay, and say what is wrong',
  usage,
  main,
};
