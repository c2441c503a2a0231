// The command line every bench file shares: `node bench/dist/NAME.js [--quick] [flags]
// [--json FILE] [--markdown FILE]`, the text result on stdout, bounded in time (lib/main.ts).
import { writeFile } from 'node:fs/promises';
import { runAsMain } from './main.js';

/** A flag's handler: sets options, reading the flag's value with `value()` when it takes one. */
export type Flags<O> = Record<string, (o: O, value: () => string) => void>;

export interface BenchCli<O, R> {
  name: string;
  /** Flags beyond --quick, --json, --markdown and --help, e.g. '[--size MiB]'. */
  usage: string;
  flags: Flags<O>;
  /** Options of --quick (a short run to check a change, not figures to publish). */
  quick: Partial<O>;
  limitMs: number;
  run(o: O): Promise<R>;
  text(r: R): string;
  markdown(r: R): string;
}

export function parseBenchArgs<O extends object>(argv: readonly string[], cli: Pick<BenchCli<O, unknown>, 'name' | 'usage' | 'flags' | 'quick'>): O & { json?: string; markdown?: string } {
  const o = {} as O & { json?: string; markdown?: string };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    if (a === '--quick') Object.assign(o, cli.quick);
    else if (a === '--json') o.json = value();
    else if (a === '--markdown') o.markdown = value();
    else if (a === '--help' || a === '-h') {
      process.stdout.write(`node bench/dist/${cli.name}.js [--quick] ${cli.usage} [--json FILE] [--markdown FILE]\n`);
      process.exit(0);
    } else {
      const f = cli.flags[a];
      if (f === undefined) throw new Error(`unknown argument ${a} (try --help)`);
      f(o, value);
    }
  }
  return o;
}

/** Runs the bench when `moduleUrl` is the entry point; prints text, writes --json / --markdown. */
export function benchMain<O extends object, R>(moduleUrl: string, cli: BenchCli<O, R>): void {
  runAsMain(moduleUrl, cli.name, cli.limitMs, async () => {
    const args = parseBenchArgs(process.argv.slice(2), cli);
    const res = await cli.run(args);
    process.stdout.write(`${cli.text(res)}\n`);
    if (args.json) await writeFile(args.json, `${JSON.stringify(res, null, 2)}\n`);
    if (args.markdown) await writeFile(args.markdown, `${cli.markdown(res)}\n`);
  });
}

/** PASS / FAIL / N/A (not measured in this run). */
export const verdict = (pass: boolean | undefined): string => (pass === undefined ? 'N/A' : pass ? 'PASS' : 'FAIL');
