// The environment the agent runs with on a Pi: the Environment= lines of the systemd unit that
// deploy/agent/install.sh installs. Benchmarks start the agent with it, so their figures are the
// installed agent's, not a bare `node` the Pi never runs.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const AGENT_UNIT = fileURLToPath(new URL('../../../deploy/agent/porthole-agent.service', import.meta.url));

/** Splits one Environment= value as systemd does: whitespace separates, double quotes group. */
export function parseEnvironmentLine(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of value.matchAll(/(?:"(?:[^"\\]|\\.)*"|[^\s"])+/g)) {
    const word = m[0].replace(/"((?:[^"\\]|\\.)*)"/g, (_, q: string) => q.replace(/\\(.)/g, '$1'));
    const eq = word.indexOf('=');
    if (eq > 0) out[word.slice(0, eq)] = word.slice(eq + 1);
  }
  return out;
}

/** Every Environment= assignment of the unit (later ones win, as in systemd). */
export function installedAgentEnv(unitPath = AGENT_UNIT): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(unitPath, 'utf8').split('\n')) {
    const m = /^\s*Environment=(.*)$/.exec(line);
    if (m !== null) Object.assign(env, parseEnvironmentLine(m[1]!));
  }
  return env;
}

/** `K=V K=V`, for a table cell or a log line. */
export function envText(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([k, v]) => (/\s/.test(v) ? `${k}="${v}"` : `${k}=${v}`))
    .join(' ');
}
