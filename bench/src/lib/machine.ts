// What every bench result records about the machine it ran on.
import { cpus, release } from 'node:os';

export interface Machine {
  node: string;
  cpus: number;
  cpuModel: string;
  kernel: string;
}

export function machine(): Machine {
  const c = cpus();
  return { node: process.version, cpus: c.length, cpuModel: c[0]?.model ?? '?', kernel: release() };
}
