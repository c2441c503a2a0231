#!/usr/bin/env node
import { main } from './main.js';
import { ExitCode } from './supervisor/index.js';

// Anything that escapes is a bug: say so and exit non-zero, so systemd restarts a clean process
// (continuing after an uncaught exception would run on in an unknown state).
const crash = (what: string) => (err: unknown) => {
  process.stderr.write(`porthole-agent: ${what}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(ExitCode.Software);
};
process.on('uncaughtException', crash('uncaught exception'));
process.on('unhandledRejection', crash('unhandled rejection'));

main(process.argv.slice(2)).then((code) => process.exit(code), crash('fatal error'));
