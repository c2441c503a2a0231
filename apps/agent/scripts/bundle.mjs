// Bundles the agent into one CommonJS file for the Pi: dist/porthole-agent.cjs runs on Node 18
// (Raspberry Pi OS bookworm's own) on any architecture, with no node_modules and nothing native.
//   node scripts/bundle.mjs        (part of `npm run build`)
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const { version } = JSON.parse(readFileSync(here('../package.json'), 'utf8'));

/** src/version.ts reads ../package.json at run time; the one file has none beside it, so the
 * bundle gets the version written in instead. */
function bakedVersion(v) {
  return {
    name: 'baked-version',
    setup(b) {
      b.onResolve({ filter: /\/version\.js$/ }, (args) =>
        args.importer.startsWith(here('../src/')) ? { path: 'version', namespace: 'baked-version' } : undefined,
      );
      b.onLoad({ filter: /.*/, namespace: 'baked-version' }, () => ({
        contents: `export const AGENT_VERSION = ${JSON.stringify(v)};`,
        loader: 'js',
      }));
    },
  };
}

const result = await build({
  entryPoints: [here('../src/cli.ts')],
  outfile: here('../dist/porthole-agent.cjs'),
  bundle: true,
  platform: 'node',
  target: 'node18',
  format: 'cjs',
  // The workspace protocol package from its sources, like the tests do.
  alias: { '@porthole/protocol': here('../../../packages/protocol/src/index.ts') },
  // ws loads these optional native speed-ups inside try/catch and falls back to JavaScript.
  // Left out of the bundle, so the require fails and the fallback runs: nothing native ships.
  external: ['bufferutil', 'utf-8-validate'],
  plugins: [bakedVersion(version)],
  legalComments: 'none',
  sourcemap: false,
  // The Pi keeps the whole source in memory (V8 holds it for lazy compilation): no comments or
  // indentation, and ASCII only (esbuild escapes the rest), so V8 stores it one byte per character
  // instead of two. Identifiers stay readable for stack traces in bug reports.
  minifyWhitespace: true,
  minifySyntax: true,
  charset: 'ascii',
  logLevel: 'warning',
  metafile: true,
  banner: { js: `// porthole-agent ${version}: one file, Node >= 18. Built from apps/agent by scripts/bundle.mjs.` },
});

const text = readFileSync(here('../dist/porthole-agent.cjs'), 'latin1');
const wide = text.search(/[^\x00-\x7f]/);
if (wide !== -1) {
  console.error(`bundle: a non-ASCII byte at offset ${wide} would make V8 keep the source two bytes per character`);
  process.exit(1);
}

// Anything native or unexpected pulled in would break the one-file promise: fail the build.
const inputs = Object.keys(result.metafile.inputs);
const native = inputs.filter((f) => f.endsWith('.node'));
if (native.length > 0) {
  console.error(`bundle: native modules pulled in: ${native.join(', ')}`);
  process.exit(1);
}
