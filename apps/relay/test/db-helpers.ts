import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type RelayConfig } from '../src/config.js';
import { createLogger, type Logger } from '../src/log.js';

/** A temp directory removed by `cleanup()`. */
export function tempDir(prefix = 'porthole-relay-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A config whose data directory is `dataDir`, with nothing taken from the real environment. */
export function testConfig(dataDir: string, overrides: Record<string, unknown> = {}): RelayConfig {
  return loadConfig({ env: {}, overrides: { dataDir, logLevel: 'debug', ...overrides } });
}

/** A logger that keeps its JSON lines in `lines`. */
export function memoryLogger(level: RelayConfig['logLevel'] = 'debug'): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  // pino writes one whole JSON line per call.
  const sink = { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) };
  return { log: createLogger({ logLevel: level }, sink), lines };
}
