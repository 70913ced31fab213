/**
 * The operator side of the capture store (`sei capture pull`): lists a device's captured frames (`cmd/captures`)
 * and fetches each one's PNG block by block (`cmd/capture-read`, several requests in flight, each block checked
 * against its SHA-256 and the whole file against the frame's), into an image folder: a labelled frame under its
 * class folder, the others under `_unlabelled/`, each named `<device>-<capture id>.png`. What was fetched is
 * recorded in `<out>/.sei-capture/<device>.json` and the blocks of a frame under way in a `.part` file beside it,
 * so that a run that stops (an interruption, a lost broker, a device that stops answering) resumes at the next
 * run with the blocks it lacks, and a frame is never fetched or filed twice: a frame labelled since the last run
 * moves to its class folder.
 */
import { createHash, randomUUID } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import type { IClientOptions, MqttClient } from 'mqtt';
import { ConfigError, SeiError } from '../../runtime/index.js';
import type { CaptureItem, CaptureReadResult, CapturesResult, CommandReply } from '../messages.js';
import { connectOperator } from '../ota/operator.js';
import { blockCount } from '../ota/protocol.js';

/** A device that does not answer, or answers with an error. */
export class DeviceError extends SeiError {}

/** Sends commands to one device and waits for their replies (3.1.1 style: reply topic and id in the payload). */
export class DeviceClient {
  private readonly pending = new Map<string, { resolve: (r: CommandReply) => void; timer: NodeJS.Timeout }>();
  private readonly replyTopic: string;
  private lastStatus: string | null = null;

  private constructor(
    private readonly client: MqttClient,
    readonly prefix: string,
    readonly device: string,
    private readonly timeoutMs: number,
  ) {
    this.replyTopic = `${prefix}reply/pull-${randomUUID().slice(0, 8)}`;
    client.on('message', (topic, payload) => {
      if (topic === `${prefix}status`) {
        try {
          this.lastStatus = String((JSON.parse(payload.toString('utf8')) as { state?: unknown }).state);
        } catch {
          this.lastStatus = null;
        }
        return;
      }
      if (topic !== this.replyTopic) return;
      let reply: CommandReply & { progress?: unknown };
      try {
        reply = JSON.parse(payload.toString('utf8')) as typeof reply;
      } catch {
        return;
      }
      if (reply.ok && 'progress' in reply && !('result' in reply)) return;
      const p = typeof reply.correlationId === 'string' ? this.pending.get(reply.correlationId) : undefined;
      if (!p) return;
      clearTimeout(p.timer);
      this.pending.delete(reply.correlationId as string);
      p.resolve(reply);
    });
  }

  static async connect(o: {
    url: string;
    prefix: string;
    device: string;
    timeoutMs: number;
    username?: string;
    password?: string;
  }): Promise<DeviceClient> {
    const auth: IClientOptions = {};
    if (o.username !== undefined) auth.username = o.username;
    if (o.password !== undefined) auth.password = o.password;
    let client: MqttClient;
    try {
      client = await connectOperator(o.url, { ...auth, reconnectPeriod: 0 });
    } catch (err) {
      throw new ConfigError(
        `--mqtt: expected a reachable broker, got ${JSON.stringify(o.url)} (${(err as Error).message})`,
        '--mqtt',
      );
    }
    const c = new DeviceClient(client, o.prefix, o.device, o.timeoutMs);
    await client.subscribeAsync([c.replyTopic, `${o.prefix}status`], { qos: 1 });
    return c;
  }

  /** `cmd/<name>` with `args`: the result, or a DeviceError (the device's refusal, or no answer in time). */
  async command<T>(name: string, args: Record<string, unknown>): Promise<T> {
    const correlationId = randomUUID();
    const reply = await new Promise<CommandReply | null>((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(correlationId);
        resolve(null);
      }, this.timeoutMs);
      this.pending.set(correlationId, { resolve, timer });
      this.client.publish(
        `${this.prefix}cmd/${name}`,
        JSON.stringify({ ...args, replyTo: this.replyTopic, correlationId }),
        { qos: 1 },
        (err) => {
          if (err) {
            clearTimeout(timer);
            this.pending.delete(correlationId);
            resolve(null);
          }
        },
      );
    });
    if (!reply)
      throw new DeviceError(
        `device ${this.device}: expected a reply to cmd/${name} within ${this.timeoutMs / 1000} s, got none (its retained status: ${this.lastStatus ?? 'none'}, topics under ${this.prefix})`,
        '--device',
      );
    if (!reply.ok)
      throw new DeviceError(`device ${this.device}: cmd/${name}: ${reply.error.message}`, reply.error.field ?? name);
    return (reply as { result: unknown }).result as T;
  }

  async close(): Promise<void> {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    await this.client.endAsync();
  }
}

/** What a folder knows of one device's frames: where each fetched one was filed, and a frame under way. */
interface PullState {
  readonly device: string;
  /** Capture id → its sha256 and the path it was filed under (relative to the folder). */
  readonly pulled: Record<string, { readonly sha256: string; readonly path: string }>;
  /** The frame under way: its blocks already in its `.part` file. */
  partial: { readonly id: number; readonly sha256: string; readonly blockSize: number; readonly have: number[] } | null;
}

/** `<class>/<device>-<id>.png`, or `_unlabelled/…`; a class name's slashes become "-" (one folder level). */
export function capturePath(device: string, item: Pick<CaptureItem, 'id' | 'label'>): string {
  const folder = item.label === null ? '_unlabelled' : item.label.replace(/[/\\]/g, '-');
  return join(folder, `${device}-${item.id}.png`);
}

export interface PullOptions {
  readonly url: string;
  readonly device: string;
  readonly out: string;
  /** Topic prefix of the device, e.g. `sei/default/dev1/`. */
  readonly prefix: string;
  /** Seconds a command may take. */
  readonly timeoutS: number;
  /** Bytes per block (256..65536). */
  readonly blockSize: number;
  /** `cmd/capture-read` requests in flight at once. */
  readonly window: number;
  readonly username?: string;
  readonly password?: string;
  /** Progress lines. */
  readonly log?: (line: string) => void;
  /** Stops the run after the current requests (the next run resumes). */
  readonly signal?: AbortSignal;
  /** After every block written (tests interrupt a run with it). */
  readonly onBlock?: (id: number, index: number) => void;
}

export interface PullSummary {
  readonly device: string;
  readonly out: string;
  /** Frames the device keeps. */
  readonly frames: number;
  /** Frames fetched by this run. */
  readonly pulled: number;
  /** Frames fetched before and moved to another folder (labelled since). */
  readonly moved: number;
  /** Frames fetched before and left as they are. */
  readonly kept: number;
  /** Frames the device dropped while the run went on. */
  readonly gone: number;
  /** Blocks this run fetched (a resumed frame fetches only the blocks it lacks). */
  readonly blocks: number;
  readonly bytes: number;
  /** Frames in the folder per class folder (`_unlabelled` included), this device's. */
  readonly classes: Readonly<Record<string, number>>;
  /** The run stopped early (signal): run again to go on. */
  readonly interrupted: boolean;
}

function readState(file: string, device: string): PullState {
  if (!existsSync(file)) return { device, pulled: {}, partial: null };
  try {
    const s = JSON.parse(readFileSync(file, 'utf8')) as PullState;
    if (s.device !== device || typeof s.pulled !== 'object' || s.pulled === null) throw new Error('not this device');
    return { device, pulled: s.pulled, partial: s.partial ?? null };
  } catch (err) {
    throw new ConfigError(
      `--out: expected a readable pull record in ${file}, got ${(err as Error).message} (remove the file to start over)`,
      '--out',
    );
  }
}

function writeState(file: string, state: PullState): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(state));
  renameSync(tmp, file);
}

/** Fetches a device's captured frames into `out` (resuming a run that stopped). */
export async function pullCaptures(o: PullOptions): Promise<PullSummary> {
  const log = o.log ?? (() => {});
  const meta = join(o.out, '.sei-capture');
  mkdirSync(meta, { recursive: true });
  const stateFile = join(meta, `${o.device}.json`);
  const partFile = join(meta, `${o.device}.part`);
  const state = readState(stateFile, o.device);
  const client = await DeviceClient.connect({
    url: o.url,
    prefix: o.prefix,
    device: o.device,
    timeoutMs: o.timeoutS * 1000,
    ...(o.username !== undefined ? { username: o.username } : {}),
    ...(o.password !== undefined ? { password: o.password } : {}),
  });
  let pulled = 0,
    moved = 0,
    kept = 0,
    gone = 0,
    blocks = 0,
    bytes = 0;
  let interrupted = false;
  try {
    const items: CaptureItem[] = [];
    for (let after = 0; ; ) {
      const page = await client.command<CapturesResult>('captures', { after, limit: 500 });
      items.push(...page.frames);
      if (page.next === null) break;
      after = page.next;
    }
    log(
      `device ${o.device}: ${items.length} captured frame(s); ${Object.keys(state.pulled).length} already in ${o.out}`,
    );
    let done = 0;
    const step = Math.max(1, Math.ceil(items.length / 10));
    for (const item of items) {
      if (o.signal?.aborted) {
        interrupted = true;
        break;
      }
      const want = capturePath(o.device, item);
      const had = state.pulled[item.id];
      if (had && had.sha256 === item.sha256) {
        if (had.path !== want && existsSync(join(o.out, had.path))) {
          mkdirSync(dirname(join(o.out, want)), { recursive: true });
          renameSync(join(o.out, had.path), join(o.out, want));
          state.pulled[item.id] = { sha256: item.sha256, path: want };
          writeState(stateFile, state);
          moved++;
        } else kept++;
      } else {
        const r = await fetchFrame(client, o, item, state, stateFile, partFile);
        if (r === 'gone') gone++;
        else if (r === 'interrupted') {
          interrupted = true;
          break;
        } else {
          pulled++;
          blocks += r.blocks;
          bytes += item.size;
        }
      }
      done++;
      if (done % step === 0 || done === items.length)
        log(`  ${done}/${items.length} frames (${pulled} fetched, ${moved} moved, ${kept} already here)`);
    }
  } finally {
    await client.close();
  }
  const classes: Record<string, number> = {};
  for (const p of Object.values(state.pulled)) {
    const c = dirname(p.path);
    classes[c] = (classes[c] ?? 0) + 1;
  }
  return {
    device: o.device,
    out: o.out,
    frames: pulled + moved + kept + gone,
    pulled,
    moved,
    kept,
    gone,
    blocks,
    bytes,
    classes,
    interrupted,
  };
}

/** One frame's missing blocks into the `.part` file, then the whole file checked and filed. */
async function fetchFrame(
  client: DeviceClient,
  o: PullOptions,
  item: CaptureItem,
  state: PullState,
  stateFile: string,
  partFile: string,
): Promise<{ blocks: number } | 'gone' | 'interrupted'> {
  const resume = state.partial?.id === item.id && state.partial.sha256 === item.sha256 && existsSync(partFile);
  const blockSize = resume ? state.partial!.blockSize : o.blockSize;
  const n = blockCount(item.size, blockSize);
  const have = new Set(resume ? state.partial!.have : []);
  if (!resume) {
    writeFileSync(partFile, Buffer.alloc(0));
    state.partial = { id: item.id, sha256: item.sha256, blockSize, have: [] };
    writeState(stateFile, state);
  }
  const missing = Array.from({ length: n }, (_, i) => i).filter((i) => !have.has(i));
  const per = 8;
  const batches: number[][] = [];
  for (let i = 0; i < missing.length; i += per) batches.push(missing.slice(i, i + per));
  const fd = openSync(partFile, 'r+');
  let fetched = 0;
  try {
    let next = 0;
    let stop: 'gone' | 'interrupted' | null = null;
    const worker = async () => {
      while (next < batches.length && !stop) {
        if (o.signal?.aborted) {
          stop = 'interrupted';
          return;
        }
        const batch = batches[next++]!;
        let r: CaptureReadResult;
        try {
          r = await client.command<CaptureReadResult>('capture-read', { id: item.id, blocks: batch, blockSize });
        } catch (err) {
          if (err instanceof DeviceError && err.field === 'id') {
            stop = 'gone';
            return;
          }
          throw err;
        }
        for (const b of r.blocks) {
          const data = Buffer.from(b.data, 'base64');
          const expected = b.index === n - 1 ? item.size - b.index * blockSize : blockSize;
          const digest = createHash('sha256').update(data).digest('hex');
          if (data.length !== expected || digest !== b.sha256)
            throw new DeviceError(
              `device ${o.device}: capture ${item.id} block ${b.index}: expected ${expected} bytes with sha256 ${b.sha256.slice(0, 16)}…, got ${data.length} bytes with ${digest.slice(0, 16)}…`,
              'capture-read',
            );
          writeSync(fd, data, 0, data.length, b.index * blockSize);
          have.add(b.index);
          fetched++;
          state.partial = { id: item.id, sha256: item.sha256, blockSize, have: [...have] };
          writeState(stateFile, state);
          o.onBlock?.(item.id, b.index);
          if (o.signal?.aborted) {
            stop = 'interrupted';
            return;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(o.window, batches.length)) }, worker));
    if (stop === 'gone') {
      state.partial = null;
      writeState(stateFile, state);
      rmSync(partFile, { force: true });
      return 'gone';
    }
    if (stop === 'interrupted' || have.size < n) return 'interrupted';
  } finally {
    closeSync(fd);
  }
  const bytes = readFileSync(partFile);
  const digest = createHash('sha256').update(bytes).digest('hex');
  if (bytes.length !== item.size || digest !== item.sha256) {
    state.partial = null;
    writeState(stateFile, state);
    rmSync(partFile, { force: true });
    throw new DeviceError(
      `device ${o.device}: capture ${item.id}: expected ${item.size} bytes with sha256 ${item.sha256.slice(0, 16)}…, got ${bytes.length} with ${digest.slice(0, 16)}… (run again to fetch it anew)`,
      'capture-read',
    );
  }
  const path = capturePath(o.device, item);
  mkdirSync(dirname(join(o.out, path)), { recursive: true });
  renameSync(partFile, join(o.out, path));
  state.pulled[item.id] = { sha256: item.sha256, path };
  state.partial = null;
  writeState(stateFile, state);
  return { blocks: fetched };
}
