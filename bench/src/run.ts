// `npm run bench`: runs every benchmark under bench/ in one go and writes bench/README.md with
// the figures, the machine, the date and how to re-run. Never part of `npm test`.
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { runAsMain } from './lib/main.js';
import { benchProtocol, renderProtocolMarkdown } from './protocol.js';
import { benchProxy, renderProxyMarkdown } from './proxy.js';
import { benchAgentMemory, renderAgentMarkdown } from './agent.js';
import { benchLink, renderLinkMarkdown } from './link.js';
import { benchScale, renderScaleMarkdown } from './scale.js';
import { benchTlsCiphers, renderTlsCiphersMarkdown } from './tls-ciphers.js';

const readme = fileURLToPath(new URL('../README.md', import.meta.url));

interface Section {
  title: string;
  run: () => Promise<string>;
}

/** Benchmarks that other modules add register here by file name (optional ones are skipped if absent). */
async function optional(file: string, fn: string, render: string): Promise<Section['run'] | undefined> {
  try {
    const m = (await import(file)) as Record<string, (...a: unknown[]) => unknown>;
    const bench = m[fn];
    const md = m[render];
    if (typeof bench !== 'function' || typeof md !== 'function') return undefined;
    return async () => String(md(await bench()));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') return undefined;
    throw e;
  }
}

async function main(): Promise<void> {
  const only = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const sections: Section[] = [
    { title: 'Protocol', run: async () => renderProtocolMarkdown(await benchProtocol()) },
    { title: 'Proxy', run: async () => renderProxyMarkdown(await benchProxy()) },
  ];
  const webcam = await optional('./webcam.js', 'benchWebcam', 'renderWebcamMarkdown');
  if (webcam !== undefined) sections.push({ title: 'Webcam', run: webcam });
  sections.push(
    { title: 'Link', run: async () => renderLinkMarkdown(await benchLink()) },
    { title: 'Scale', run: async () => renderScaleMarkdown(await benchScale()) },
    { title: 'Agent', run: async () => renderAgentMarkdown(await benchAgentMemory()) },
    { title: 'Ciphers', run: async () => renderTlsCiphersMarkdown(await benchTlsCiphers()) },
  );
  const known = sections.map((s) => s.title.toLowerCase());
  for (const o of only) if (!known.includes(o)) throw new Error(`unknown section ${o} (known: ${known.join(', ')})`);

  const started = new Date();
  const loadBefore = os.loadavg()[0] ?? NaN;
  let failed = 0;
  const out: string[] = [];
  for (const s of sections) {
    if (only.length > 0 && !only.includes(s.title.toLowerCase())) continue;
    process.stderr.write(`\n== ${s.title} ==\n`);
    const t0 = Date.now();
    let md: string;
    try {
      md = await s.run();
    } catch (err) {
      // One broken section must not lose the others' figures.
      process.stderr.write(`${s.title} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      md = `**Failed**: \`${(err instanceof Error ? err.message : String(err)).split('\n')[0]}\``;
      failed++;
    }
    out.push(`## ${s.title}\n\n${md.trim()}\n\n_Took ${Math.round((Date.now() - t0) / 1000)} s._\n`);
  }
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const load = `1-minute load average ${loadBefore.toFixed(2)} when it started, ${(os.loadavg()[0] ?? NaN).toFixed(2)} when it ended`;
  const head = `# Benchmarks

Written by \`npm run bench\` on ${started.toISOString()}: ${os.cpus().length}× ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB,
Node ${process.version}, ${os.type()} ${os.release()}; ${load}. Every figure compares against a baseline measured
in the same run (a raw WebSocket; a direct connection, nginx and \`ssh -L\`); the machine is
shared and noisy, so read medians and ratios, not absolute numbers.

Re-run everything with \`npm run bench\` (as root: the link section makes a network namespace
when the kernel has tc netem, and the scale section wants \`ulimit -n\` above 6,000), or some parts
with \`npm run bench -- protocol\` (also \`proxy\`, \`webcam\`, \`link\`, \`scale\`, \`agent\`, \`ciphers\`); each file
also runs alone, e.g. \`node bench/dist/proxy.js --quick\` or \`node bench/dist/scale.js --quick\`.
Nothing here runs in \`npm test\`.
${process.env.PORTHOLE_BENCH_NOTE ? `\n${process.env.PORTHOLE_BENCH_NOTE}\n` : ''}`;
  let previous = '';
  try {
    previous = await readFile(readme, 'utf8');
  } catch {
    /* first run */
  }
  // Sections not re-run this time keep their previous figures; all stay in the order above.
  const kept = previous
    .split(/^## /m)
    .slice(1)
    .filter((s) => !out.some((o) => o.startsWith(`## ${s.split('\n')[0]}`)))
    .map((s) => `## ${s.trimEnd()}\n`);
  const rank = (md: string) => {
    const i = sections.findIndex((s) => md.startsWith(`## ${s.title}\n`));
    return i < 0 ? sections.length : i;
  };
  const body = [...out, ...kept].sort((a, b) => rank(a) - rank(b));
  await writeFile(readme, [head, ...body].join('\n'));
  process.stderr.write(`\nwrote ${readme}\n`);
  if (failed > 0) {
    process.stderr.write(`${failed} section(s) failed\n`);
    process.exitCode = 1;
  }
}

// Bounded (gives up after 30 minutes), and Ctrl-C stops every child process and removes what
// the sections made (temp dirs, the link section's network namespace).
runAsMain(import.meta.url, 'bench', 30 * 60_000, main);
