/**
 * What a long benchmark (bench/soak.ts, bench/fleet.ts) writes beside its figures: when, on what machine, under
 * what load and by which command it ran, and its generated part of a markdown file between two markers.
 */
import { writeMarkedSection } from '../output.js';
import { loadavg } from 'node:os';
import { machineInfo } from './machine.js';

export interface RunContext {
  readonly date: string;
  readonly cpu: string;
  readonly cores: number;
  readonly node: string;
  /** 1, 5 and 15 minute load averages when the run started and when it ended. */
  readonly loadStart: readonly number[];
  loadEnd: readonly number[];
  readonly command: string;
}

const load = () => loadavg().map((x) => Number(x.toFixed(2)));

/** The context at the start of a run; `finish` records the load at its end. */
export function runContext(command: string): RunContext & { finish(): RunContext } {
  const m = machineInfo();
  const ctx = {
    date: m.date,
    cpu: m.cpu,
    cores: m.cores,
    node: m.node,
    loadStart: load(),
    loadEnd: [] as readonly number[],
    command,
    finish() {
      ctx.loadEnd = load();
      return ctx;
    },
  };
  return ctx;
}

/** One markdown line: date, machine, Node, load averages and the command. */
export function contextLine(c: RunContext): string {
  const when = `${c.date.slice(0, 16).replace('T', ' ')} UTC`;
  return (
    `${when}, ${c.cpu} (${c.cores} cores), Node ${c.node}, load average ${c.loadStart.join(' ')} at the start` +
    `${c.loadEnd.length ? ` and ${c.loadEnd.join(' ')} at the end` : ''}: \`${c.command}\``
  );
}

/** The command line as a user types it: `npm run <script> -- <arguments>`. */
export function npmCommand(script: string, args: readonly string[]): string {
  return `npm run ${script}${args.length ? ` -- ${args.join(' ')}` : ''}`;
}

/**
 * Writes `body` between `<!-- name:begin ... -->` and `<!-- name:end -->` in the markdown file `path`, replacing
 * what was there, or appends the marked section when the file has none (a new file is created).
 */
export function writeSection(path: string, name: string, body: string, generatedBy: string): void {
  const begin = `<!-- ${name}:begin`;
  const end = `<!-- ${name}:end -->`;
  const section = `${begin} (written by \`${generatedBy}\`; edit the code, not this part) -->\n${body.trimEnd()}\n${end}`;
  writeMarkedSection(path, begin, end, section);
}
