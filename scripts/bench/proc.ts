/**
 * What the soak and the fleet benchmark (bench/soak.ts, bench/fleet.ts) read about an agent process from Linux's
 * /proc, the node flags and environment of the systemd unit they run it with, and the least-squares slope of a series.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ProcSample {
  /** Resident set size (VmRSS), MiB. */
  readonly rssMb: number;
  /** Peak resident set size (VmHWM), MiB. */
  readonly peakRssMb: number;
  /** User + system CPU time since the process started, seconds. */
  readonly cpuS: number;
  /** Open file descriptors (entries of /proc/PID/fd). */
  readonly fds: number;
}

let clockTicks: number | undefined;

/** Clock ticks per second of /proc/PID/stat's times (getconf CLK_TCK; 100 on every Linux this runs on). */
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** CPU seconds (user + system) of a process from /proc/PID/stat, or null once it is gone. */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count fields after its closing one.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
  } catch {
    return null;
  }
}

/** RSS, peak RSS, CPU time and open descriptors of a process, or null once it is gone (or not on Linux). */
export function procSample(pid: number): ProcSample | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
    const cpuS = cpuSeconds(pid);
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    if (cpuS === null) return null;
    return { rssMb: kb('VmRSS') / 1024, peakRssMb: kb('VmHWM') / 1024, cpuS, fds };
  } catch {
    return null;
  }
}

/**
 * Peak RSS of a process image (this one by default), bytes: VmHWM, which belongs to the image alone. Linux's
 * getrusage maxrss (`process.resourceUsage().maxRSS`) survives exec, so a process spawned by a big parent starts
 * with the parent's RSS at fork as its "peak". Null once the process is gone; off Linux, this process's maxrss.
 */
export function peakRssBytes(pid: number | 'self' = 'self'): number | null {
  try {
    const kB = /VmHWM:\s*(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    if (kB) return Number(kB) * 1024;
  } catch {
    // gone, or not Linux
  }
  return pid === 'self' ? process.resourceUsage().maxRSS * 1024 : null;
}

/** Least-squares slope of ys over xs (0 for fewer than two distinct xs). */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  if (n < 2 || ys.length !== n) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** The `Environment=NAME=value` lines of the systemd unit (packaging/sei-agent.service). */
export function unitEnvironment(root: string): Record<string, string> {
  const unit = readFileSync(join(root, 'packaging/sei-agent.service'), 'utf8');
  return Object.fromEntries(
    [...unit.matchAll(/^Environment=([A-Za-z_][A-Za-z0-9_]*)=(\S*)$/gm)].map((m) => [m[1]!, m[2]!]),
  );
}

/**
 * The V8 flags of the systemd unit's ExecStart line (packaging/sei-agent.service), e.g.
 * ["--max-semi-space-size=1", "--max-old-space-size=48"]: what a box runs the agent with.
 */
export function unitNodeFlags(root: string): string[] {
  const unit = readFileSync(join(root, 'packaging/sei-agent.service'), 'utf8');
  const line = /^ExecStart=\S*node((?: --[a-z0-9-]+=\S+)*) /m.exec(unit);
  if (!line) throw new Error('packaging/sei-agent.service: no `ExecStart=/usr/bin/node [--flag=value...] ...` line');
  return line[1]!.trim().split(/\s+/).filter(Boolean);
}
