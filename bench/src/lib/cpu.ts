// CPU time of processes and process trees from /proc (Linux).
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

let clkTck: number | undefined;

/** Clock ticks per second of /proc/PID/stat's times (getconf CLK_TCK, usually 100). */
export function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

export interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
  state: string;
  /** utime + stime in ticks. */
  self: number;
  /** cutime + cstime in ticks: children that exited and were waited for. */
  children: number;
}

/** /proc/PID/stat, or undefined when the process is gone. */
export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  // fields after "pid (comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
  const f = text.slice(close + 2).split(' ');
  const n = (i: number) => Number(f[i] ?? 0);
  return { pid, ppid: n(1), comm, state: f[0] ?? '?', self: n(11) + n(12), children: n(13) + n(14) };
}

/** CPU seconds used by one process (user + system), optionally with its waited-for children. */
export function processCpuSeconds(pid: number, withChildren = false): number {
  const s = procStat(pid);
  if (!s) return NaN;
  return (s.self + (withChildren ? s.children : 0)) / ticksPerSecond();
}

/** pid and all its live descendants. */
export function processTree(pid: number): number[] {
  const byParent = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = procStat(Number(name));
    if (!s) continue;
    const list = byParent.get(s.ppid) ?? [];
    list.push(s.pid);
    byParent.set(s.ppid, list);
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length > 0) {
    const p = todo.pop() as number;
    out.push(p);
    todo.push(...(byParent.get(p) ?? []));
  }
  return out;
}

/**
 * CPU seconds of a whole process tree: every live member's own time plus the time of its
 * exited, waited-for children (so nothing is counted twice).
 */
export function treeCpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    const s = procStat(p);
    if (s) ticks += s.self + s.children;
  }
  return ticks / ticksPerSecond();
}

/** A CPU meter over a set of processes: call it for seconds used so far. */
export type CpuMeter = () => number;

export function cpuMeter(pids: () => number[], tree = false): CpuMeter {
  return () => pids().reduce((sum, pid) => sum + (tree ? treeCpuSeconds(pid) : processCpuSeconds(pid, true) || 0), 0);
}

/** A `kB` field of /proc/PID/status in bytes, NaN when the process is gone. */
function statusBytes(pid: number, field: 'VmRSS' | 'RssAnon'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Resident set size of one process in bytes (/proc/PID/status VmRSS), NaN when gone. */
export function rssBytes(pid: number): number {
  return statusBytes(pid, 'VmRSS');
}

/**
 * The anonymous part of a process's resident memory in bytes (RssAnon: heap, buffers, stacks),
 * what the process itself costs; the rest of RSS is file-backed (the Node binary's and libraries'
 * code), shared with every other Node process and dropped by the kernel under memory pressure.
 */
export function anonRssBytes(pid: number): number {
  return statusBytes(pid, 'RssAnon');
}

/** Resident memory of a whole process tree in bytes (shared pages counted once per process). */
export function treeRssBytes(pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + (rssBytes(p) || 0), 0);
}

/** Samples `read` every `everyMs` until stopped; returns the largest value seen. */
export function peakSampler(read: () => number, everyMs = 100): { stop(): number } {
  let peak = read();
  const timer = setInterval(() => {
    const v = read();
    if (v > peak || !Number.isFinite(peak)) peak = v;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      const v = read();
      return Number.isFinite(v) && v > peak ? v : peak;
    },
  };
}
