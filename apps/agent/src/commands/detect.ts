import { parseArgs } from 'node:util';
import { detect, DETECT_DEFAULTS, type Detection, type DetectOptions, type Proposal } from '../detect/index.js';
import { ExitCode } from '../supervisor/index.js';
import type { Command, CommandContext } from './types.js';

const usage = `Usage: porthole-agent detect [--json] [--port N]...

Looks for printer software on this machine (OctoPrint, PrusaLink, Moonraker with Mainsail or
Fluidd, mjpg-streamer / ustreamer / camera-streamer webcams) and proposes the services and routes
for the agent's config. 'porthole-agent pair' uses the same proposal when given no --service.

Options:
      --json          print the findings and the proposal as JSON
      --port N        probe this port (repeatable; default: ${DETECT_DEFAULTS.ports.join(', ')})
      --host ADDRESS  probe this address (default: ${DETECT_DEFAULTS.host})
      --timeout MS    per request (default: ${DETECT_DEFAULTS.timeoutMs})
  -h, --help          show this help

Exit status: 0 something was found, 1 nothing was, 64 bad usage.
`;

/** The services and routes of a proposal, as people read them. */
export function describeProposal(p: Proposal): string {
  const names = Object.keys(p.services);
  const w = Math.max(...names.map((n) => n.length));
  const svc = Object.entries(p.services).map(
    ([n, s]) => `  ${n.padEnd(w)}  ${s.url}  (profile ${s.profile}${s.passAuthorization === true ? ', passes Authorization' : ''})`,
  );
  const pw = Math.max(...p.routes.map((r) => r.path.length));
  const routes = p.routes.map((r) => `  ${r.path.padEnd(pw)}  -> ${r.service}${r.stripPrefix === true ? ' (prefix stripped)' : ''}`);
  return `${svc.join('\n')}\n\n${routes.join('\n')}\n`;
}

export function describeDetection(d: Detection): string {
  const lines = [`Looked for printer software on ${d.host}, ports ${d.ports.join(', ')}.`, ''];
  if (d.findings.length === 0) lines.push('  nothing answered HTTP on those ports');
  for (const f of [...d.findings].sort((a, b) => a.port - b.port)) lines.push(`  :${String(f.port).padEnd(5)}  ${f.detail}`);
  lines.push('');
  if (d.proposal === undefined) {
    lines.push('No printer UI or webcam found. Give the services by hand, e.g.', '  porthole-agent pair --relay URL --service ui=http://127.0.0.1:5000', '');
    return lines.join('\n');
  }
  lines.push(`Proposed${d.proposal.guess ? ' (a guess)' : ''}: ${d.proposal.summary}`, '', describeProposal(d.proposal));
  return lines.join('\n');
}

export interface DetectDeps {
  detect?: (opts: DetectOptions) => Promise<Detection>;
}

export function createDetectCommand(deps: DetectDeps = {}): Command {
  async function main(args: string[], ctx: CommandContext): Promise<number> {
    let values: { json?: boolean; port?: string[]; host?: string; timeout?: string; help?: boolean };
    const opts: DetectOptions = {};
    try {
      ({ values } = parseArgs({
        args,
        options: {
          json: { type: 'boolean' },
          port: { type: 'string', multiple: true },
          host: { type: 'string' },
          timeout: { type: 'string' },
          help: { type: 'boolean', short: 'h' },
        },
        strict: true,
        allowPositionals: false,
      }));
      if (values.port !== undefined) {
        opts.ports = values.port.map((p) => {
          const n = Number(p);
          if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`--port ${p}: not a port number`);
          return n;
        });
      }
      if (values.host !== undefined) opts.host = values.host;
      if (values.timeout !== undefined) {
        const t = Number(values.timeout);
        if (!Number.isInteger(t) || t < 1 || t > 60_000) throw new Error(`--timeout ${values.timeout}: milliseconds, 1 to 60000`);
        opts.timeoutMs = t;
      }
    } catch (e) {
      ctx.stderr(`porthole-agent detect: ${(e as Error).message}\n\n${usage}`);
      return ExitCode.Usage;
    }
    if (values.help === true) {
      ctx.stdout(usage);
      return ExitCode.Ok;
    }
    const d = await (deps.detect ?? detect)(opts);
    if (values.json === true) ctx.stdout(`${JSON.stringify({ host: d.host, ports: d.ports, findings: d.findings, proposal: d.proposal ?? null }, null, 2)}\n`);
    else ctx.stdout(describeDetection(d));
    return d.proposal === undefined ? 1 : ExitCode.Ok;
  }
  return { summary: 'find the printer software on this machine and propose services and routes', usage, main };
}

export const detectCommand: Command = createDetectCommand();
