/**
 * Fine-tuning runs on the device (`cmd/finetune`, `finetune.auto`): the active model's float head retrained on
 * the labelled frames in the store (finetune/ does the maths), handing the event loop back every few ms so that
 * frames keep flowing; the gate decides; an accepted head becomes the next version of the model (meta.parent
 * names the active one) and is installed by the OTA path (activation, probation, automatic rollback). One run
 * at a time, and none while an update is under way.
 */
import { ConfigError, OtaError, sampleFrames, show, writeBwsnn } from '../runtime/index.js';
import type { BwsnnModel, Engine } from '../runtime/index.js';
import type { AgentConfig } from './config.js';
import { fineTuneAsync, GATE_DEFAULTS } from './finetune/index.js';
import type { FineTuneProgress, GateOptions, TrainingFrame } from './finetune/index.js';
import { round } from './metrics/collector.js';
import { modelKey, sha256 } from './models.js';
import { errorBody } from './mqtt/link.js';
import type { Json } from './mqtt/link.js';
import type { OtaManager } from './ota/manager.js';
import type { ModelRegistry } from './registry.js';
import type { StateStore } from './store/types.js';

export interface FineTunerHost {
  config(): AgentConfig;
  /** The labelled frames and the feature cache. */
  readonly store: StateStore;
  readonly registry: ModelRegistry;
  readonly ota: Pick<OtaManager, 'busy' | 'installLocal'>;
  /** The running model. */
  active(): { version: string | null; engine: Engine | null };
  /** False once the agent stops: a run ends at its next step. */
  running(): boolean;
  /** Publishes under the device prefix (nothing when offline). */
  publish(suffix: string, body: Json, opts: { qos: 0 | 1 }): void;
  report(err: Error): void;
}

export class FineTuner {
  /** The run in progress. */
  private current: Promise<Json> | null = null;
  /** The model's shipped reference frames (models/samples/), read on the first run. */
  private reference: TrainingFrame[] | null = null;

  constructor(private readonly host: FineTunerHost) {}

  /** One run; progress reports (about ten per phase) go to `progress`. Refused while another run or an update is under way. */
  run(args: Json, progress: (body: Json) => void = () => undefined): Promise<Json> {
    const busy = this.current ? 'a fine-tuning run is in progress' : this.host.ota.busy();
    if (busy)
      return Promise.reject(new OtaError(`finetune: busy: ${busy}; try again when it has finished`, 'finetune'));
    const run = this.runNow(args, progress).finally(() => {
      this.current = null;
    });
    this.current = run;
    return run;
  }

  /** Resolves once no run is in progress (a run sees the agent stop at its next step). */
  async settled(): Promise<void> {
    await this.current?.catch(() => undefined);
  }

  /** After `label` took the stored labelled frames from `before` to `total`: finetune.auto starts a run at N, 2N, ... */
  labelled(before: number, total: number): void {
    const auto = this.host.config().finetune.auto;
    if (auto && Math.floor(total / auto.minLabelled) > Math.floor(before / auto.minLabelled)) this.auto(total);
  }

  private async runNow(args: Json, progress: (body: Json) => void): Promise<Json> {
    const gate = args.gate ?? {};
    if (typeof gate !== 'object' || gate === null || Array.isArray(gate))
      throw new ConfigError(`finetune: gate: expected an object of gate options, got ${show(gate)}`, 'gate');
    for (const [key, value] of Object.entries(gate)) {
      // gateOptions checks the ranges; here only that each is a known option with a number.
      if (!Object.hasOwn(GATE_DEFAULTS, key) || typeof value !== 'number') {
        throw new ConfigError(
          `finetune: gate.${key}: expected a number for one of ${Object.keys(GATE_DEFAULTS).join(', ')}, got ${show(value)}`,
          `gate.${key}`,
        );
      }
    }
    const { store, registry } = this.host;
    const active = this.host.active();
    const parent = active.engine!.model;
    const parentVersion = active.version!;
    const parentRec = registry.get(parentVersion)!;
    const [h, w, c] = parent.input;
    const classes = parent.head.outFeatures;
    const stored = store.labelledFrames();
    // Frames labelled under another model (other input shape or classes) cannot train this one.
    const usable = stored.filter((f) => f.shape[0] === h && f.shape[1] === w && f.shape[2] === c && f.label < classes);
    // The cache key names the pixels: frame numbers restart with every run of the agent.
    const frames: TrainingFrame[] = usable.map((f) => ({
      id: `sha256:${sha256(f.data)}`,
      data: f.data,
      label: f.label,
    }));
    const version = registry.nextVersion(parent.name, parent.version);
    let lastTenth = -1;
    const onProgress = (p: FineTuneProgress): void => {
      if (!this.host.running())
        throw new ConfigError('finetune: expected the agent to keep running, got a stop during the run', 'finetune');
      // About ten reports per phase: enough to follow, not a flood on a slow link.
      const tenth =
        p.phase === 'features'
          ? Math.floor((10 * p.done) / p.total)
          : p.phase === 'train'
            ? Math.floor((10 * p.epoch) / p.epochs)
            : 10;
      if (p.phase === 'gate' || tenth !== lastTenth)
        progress({ ...p, ...(p.phase === 'train' ? { loss: round(p.loss, 4) } : {}) });
      lastTenth = p.phase === 'gate' ? -1 : tenth;
    };
    const result = await fineTuneAsync({
      parent,
      parentSha256: parentRec.sha256,
      frames,
      reference: this.referenceFrames(parent),
      cache: store.features,
      gate: gate as GateOptions,
      version,
      onProgress,
    });
    const d = result.decision;
    const summary = {
      parent: parentVersion,
      labelled: { stored: stored.length, used: frames.length },
      reasons: d.reasons,
      holdout: {
        frames: d.holdout.frames,
        before: round(d.holdout.before, 4),
        after: round(d.holdout.after, 4),
        fixed: d.holdout.fixed,
        broken: d.holdout.broken,
        pValue: d.holdout.pValue,
      },
      reference: {
        frames: d.reference.frames,
        before: round(d.reference.before, 4),
        after: round(d.reference.after, 4),
      },
      timings: Object.fromEntries(Object.entries(result.timings).map(([k, v]) => [k, Math.round(v)])),
    };
    if (!result.model) return { accepted: false, version: null, job: null, ...summary };
    const now = this.host.active().version;
    if (now !== parentVersion) {
      throw new ConfigError(
        `finetune: expected ${parentVersion} to stay active during the run, got ${show(now)}; nothing installed`,
        'finetune',
      );
    }
    const key = modelKey(result.model);
    progress({ phase: 'activate', version: key });
    const row = await this.host.ota.installLocal(writeBwsnn(result.model), 'finetune');
    return {
      accepted: true,
      version: key,
      job: { jobId: row.jobId, state: row.state, step: row.step, reason: row.reason },
      active: this.host.active().version,
      ...summary,
    };
  }

  private referenceFrames(model: BwsnnModel): TrainingFrame[] {
    if (!this.reference) {
      const samples = sampleFrames();
      const [h, w, c] = model.input;
      const [sh, sw, sc] = samples.frameShape;
      if (sh !== h || sw !== w || sc !== c) {
        throw new ConfigError(
          `finetune: reference frames: expected the shipped samples (models/samples/) to fit the model's input ${h}x${w}x${c}, got ${sh}x${sw}x${sc}`,
          'finetune',
        );
      }
      this.reference = Array.from({ length: samples.count }, (_, i) => ({
        id: `reference#${i}`,
        data: samples.frame(i),
        label: samples.labels[i]!,
      }));
    }
    return this.reference;
  }

  /** finetune.auto: the same run as `cmd/finetune`, reported on `reply/finetune`. */
  private auto(labelled: number): void {
    const send = (body: Json) =>
      this.host.publish(
        'reply/finetune',
        { command: 'finetune', trigger: 'auto', labelled, ...body },
        { qos: body.progress ? 0 : 1 },
      );
    this.run({}, (progress) => send({ ok: true, progress })).then(
      (result) => send({ ok: true, result }),
      (err: Error) => {
        send({ ok: false, error: errorBody(err) });
        this.host.report(err);
      },
    );
  }
}
