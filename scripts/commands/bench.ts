/**
 * `sei bench`: the WASM binary kernel and engine side by side with onnxruntime-node, one thread each, in one run.
 * - kernel: one binary conv 64→64, 14×14, 3×3 at the model's measured spike rate (scripts/bench/kernel.ts) vs the
 *   same FP32 conv on onnxruntime (full optimisation) vs the bare AND/popcount ceiling;
 * - model: engine frames/s vs onnxruntime on the ANN twin (full optimisation, what a user deploying it gets) and
 *   on the SNN twin (optimisations disabled, the bit-exact configuration);
 * - the device agent end to end (scripts/bench/agent.ts) against the bare engine, and the camera path
 *   (scripts/bench/camera.ts: ffmpeg's 640×480 yuv420p test pattern into the agent's own process): CPU per frame
 *   against the engine's per-frame time, peak RSS;
 * - where a frame's time goes in the engine, by stage (scripts/bench/profile.ts: `profile_split`), and each binary
 *   layer's switch to the event path as the engine measured it (`event_switch_per_mille`);
 * - T = 1 against T = 2 (and the model's T): test-set accuracy and frames/s at each (scripts/bench/steps.ts);
 * - throughput mode: the engine on N worker threads against onnxruntime with N intra-op threads on the ANN twin,
 *   wall clock (scripts/bench/threads.ts), beside the one-thread figures;
 * - sizes: .bwsnn vs the ANN's .onnx;
 * - with --sparsity, the sparsity table (scripts/bench/sparsity.ts): the model and others of its architecture
 *   trained with a firing-rate term, each with accuracy, per-layer spike rates and frames/s vs its ANN twin.
 */
import { existsSync, statSync } from 'node:fs';
import { loadavg } from 'node:os';
import type { Command } from 'commander';
import { agentBenchFields, benchAgent } from '../bench/agent.js';
import { benchCamera, cameraBenchFields, cameraUnavailable } from '../bench/camera.js';
import { benchEngine, benchKernel } from '../bench/kernel.js';
import { machineInfo } from '../bench/machine.js';
import { profileFrame, profileSplit } from '../bench/profile.js';
import { sparsityLines, sparsityTable, type SparsityRow } from '../bench/sparsity.js';
import { accuracyBySteps, benchedSteps, testSetUnavailable } from '../bench/steps.js';
import { poolFrames } from '../bench/threads.js';
import { activeClock, setClock } from '../bench/timing.js';
import { convMacs, ortConv, ortFrames, type ConvShape } from '../bench/ort.js';
import { mapShape, readBwsnnFile, writeBwsnn } from '../../runtime/index.js';
import type { BwsnnModel } from '../../runtime/index.js';
import { annTwinOnnx, frameToNchw, snnTwinOnnx } from '../../trainer/export/onnx.js';
import { ConfigError } from '../../runtime/errors.js';
import { printJson } from '../output.js';
import { resolveModelArg } from '../model-arg.js';
import { choiceOption, fromFile, int, list, positive, positiveInt } from '../options.js';
import { MAX_THREADS } from '../../runtime/index.js';
import { measuredSwitch } from '../../runtime/kernels/wasm/planner.js';
import { verifyFrames } from './verify.js';

/** Length of one measuring round; contenders alternate rounds. */
const ROUND_SECONDS = 0.5;

/** The kernel benchmark's layer: the middle of the Fashion-MNIST layout. */
export const KERNEL_SHAPE: ConvShape = { cin: 64, cout: 64, h: 14, w: 14, k: 3 };

/** The model of the whole-model comparison: --model, else the bundled model, else random:1. */
async function benchModel(spec: string | undefined): Promise<{ model: BwsnnModel; source: string; bytes: number }> {
  const resolved = await resolveModelArg(spec);
  if (typeof resolved === 'string')
    return {
      model: fromFile('--model', 'a .bwsnn model', resolved, () => readBwsnnFile(resolved)),
      source: resolved,
      bytes: statSync(resolved).size,
    };
  return { model: resolved, source: spec ?? 'random:1', bytes: writeBwsnn(resolved).length };
}

/**
 * The spike rate the kernel benchmark feeds its 64→64 14×14 layer: the measured rate of the model's spike map of
 * that shape (what the same layer sees in the model), else the model's mean rate.
 */
function realisticRate(model: BwsnnModel, rates: readonly number[]): number {
  const layers = [model.first, ...model.hidden];
  const i = layers.findIndex((l) => {
    const [h, w, c] = mapShape(l);
    return h === KERNEL_SHAPE.h && w === KERNEL_SHAPE.w && c === KERNEL_SHAPE.cin;
  });
  return i >= 0 ? rates[i]! : rates.reduce((a, b) => a + b, 0) / rates.length;
}

const ratio = (a: number, b: number) => Number((a / b).toFixed(3));

export function register(program: Command): void {
  program
    .command('bench')
    .description(
      'WASM binary kernel and engine vs onnxruntime-node (one thread each, and in throughput mode on N threads each), T = 1 vs T = 2, file sizes',
    )
    .option('--seconds <s>', 'measuring time per item (after a short warm-up)', positive('--seconds', 600), 2)
    .option(
      '--model <file|random:SEED>',
      'model for the whole-model comparison (default: the bundled model, else random:1)',
    )
    .addOption(
      choiceOption(
        '--clock <wall|cpu>',
        "time on the wall clock, or on this process's CPU time (fairer on a machine shared with other jobs)",
        ['wall', 'cpu'],
        'wall',
      ),
    )
    .option(
      '--no-agent',
      'skip the device-agent measurements (end to end, always wall-clock; the camera path, CPU time)',
    )
    .option(
      '--accuracy-frames <n>',
      'test frames for the accuracy at each T (default: the whole Fashion-MNIST test set)',
      positiveInt('--accuracy-frames'),
      10_000,
    )
    .option(
      '--throughput-threads <n>',
      'worker threads of the throughput-mode figure, and onnxruntime intra-op threads beside it',
      int('--throughput-threads', 2, MAX_THREADS),
      2,
    )
    .option(
      '--sparsity <files>',
      'the sparsity table: these .bwsnn models (comma-separated; same architecture, other firing-rate terms) beside --model',
      list('--sparsity', (f) => f),
    )
    .option('--json', 'print a JSON summary on the last line')
    .action(
      async (opts: {
        seconds: number;
        model?: string;
        clock: 'wall' | 'cpu';
        agent: boolean;
        accuracyFrames: number;
        throughputThreads: number;
        sparsity?: string[];
        json?: boolean;
      }) => {
        setClock(opts.clock);
        const machine = machineInfo();
        console.log(
          `machine: ${machine.cpu}, ${machine.cores} cores [${machine.simdFlags.join(' ')}], node ${machine.node}, onnxruntime-node ${machine.onnxruntime}`,
        );
        console.log(
          `every measurement but the throughput-mode one runs on one thread, timed on the ${opts.clock === 'cpu' ? 'process CPU-time' : 'wall'} clock; load average ${loadavg()
            .map((x) => x.toFixed(2))
            .join(' ')} before the run`,
        );

        const { model, source, bytes: bwsnnBytes } = await benchModel(opts.model);
        // Read before the first measurement, so that a wrong path fails at once.
        const sparsityPoints = opts.sparsity?.map((f) => {
          if (!existsSync(f))
            throw new ConfigError(
              `--sparsity: expected .bwsnn files, got ${JSON.stringify(f)} (no such file)`,
              '--sparsity',
            );
          return { model: fromFile('--sparsity', 'a .bwsnn model', f, () => readBwsnnFile(f)), source: f };
        });
        const frames = verifyFrames(model.input, 16)
          .slice(-16)
          .map((f) => f.data);
        const nchw = frames.map((f) => frameToNchw(f, model.input));
        // Every contender runs in the same alternating short rounds and keeps its best, so that load from other
        // processes on the machine hits all of them alike.
        const rounds = Math.max(1, Math.round(opts.seconds / ROUND_SECONDS));
        const ann = annTwinOnnx(model);
        const annRounds = await ortFrames(ann, true, model.input, nchw);
        const snnRounds = await ortFrames(snnTwinOnnx(model), false, model.input, nchw);
        let engineFps = 0;
        let annFps = 0;
        let snnFps = 0;
        let spikeRates: readonly number[] = [];
        let engineKernel = '';
        for (let r = 0; r < rounds; r++) {
          const e = await benchEngine(model, frames, ROUND_SECONDS, 'wasm');
          if (e.fps > engineFps) [engineFps, spikeRates, engineKernel] = [e.fps, e.spikeRates, e.kernel];
          annFps = await annRounds(ROUND_SECONDS);
          snnFps = await snnRounds(ROUND_SECONDS);
        }
        const rate = realisticRate(model, spikeRates);

        // T = 1 against T = 2 (and the model's own T): frames/s in the same alternating rounds, then accuracy.
        const stepCounts = benchedSteps(model);
        const stepsFps = new Map<number, number>([[model.T, engineFps]]);
        for (let r = 0; r < rounds; r++)
          for (const T of stepCounts)
            if (T !== model.T)
              stepsFps.set(
                T,
                Math.max(stepsFps.get(T) ?? 0, (await benchEngine(model, frames, ROUND_SECONDS, 'wasm', T)).fps),
              );
        const noTestSet = testSetUnavailable();
        const stepsAccuracy = noTestSet ? [] : accuracyBySteps(model, stepCounts, opts.accuracyFrames);

        let sparsity: SparsityRow[] | undefined;
        if (sparsityPoints) {
          sparsity = await sparsityTable([{ model, source }, ...sparsityPoints], frames, {
            rounds,
            roundSeconds: ROUND_SECONDS,
            accuracyFrames: opts.accuracyFrames,
            testSet: !noTestSet,
          });
          console.log(
            "\nsparsity table (accuracy on the test set, spike rates, frames/s against each model's ANN twin):",
          );
          for (const line of sparsityLines(sparsity)) console.log(line);
        }

        // Throughput mode: N workers against onnxruntime with N intra-op threads, on the wall clock.
        const threads = opts.throughputThreads;
        const clockBefore = activeClock();
        setClock('wall');
        const pooled = await poolFrames(model, frames, threads);
        const ortThreads = await ortFrames(ann, true, model.input, nchw, threads);
        let poolFps = 0;
        let ortThreadsFps = 0;
        let oneThreadWallFps = 0;
        try {
          for (let r = 0; r < rounds; r++) {
            poolFps = await pooled.rounds(ROUND_SECONDS);
            ortThreadsFps = await ortThreads(ROUND_SECONDS);
            oneThreadWallFps = Math.max(
              oneThreadWallFps,
              (await benchEngine(model, frames, ROUND_SECONDS, 'wasm')).fps,
            );
          }
        } finally {
          await pooled.close();
          setClock(clockBefore);
        }

        const s = KERNEL_SHAPE;
        const convRounds = await ortConv(s, rate);
        let binmacs = 0;
        let ceiling = 0;
        let ortMacs = 0;
        for (let r = 0; r < rounds; r++) {
          const k = await benchKernel({ rate, seconds: ROUND_SECONDS });
          binmacs = Math.max(binmacs, k.binmacs_per_s);
          ceiling = Math.max(ceiling, k.ceiling_binmacs_per_s);
          ortMacs = await convRounds(ROUND_SECONDS);
        }
        console.log(
          `\nkernel: binary conv ${s.cin}→${s.cout}, ${s.h}×${s.w}, ${s.k}×${s.k}, input spike rate ${(rate * 100).toFixed(1)}% (${(convMacs(s) / 1e6).toFixed(2)} M MACs per call)`,
        );
        console.log(`  wasm binary conv        ${(binmacs / 1e9).toFixed(2)} G binary MAC/s`);
        console.log(
          `  AND/popcount ceiling    ${(ceiling / 1e9).toFixed(2)} G binary MAC/s  → kernel at ${((100 * binmacs) / ceiling).toFixed(0)}%`,
        );
        console.log(
          `  onnxruntime FP32 conv   ${(ortMacs / 1e9).toFixed(2)} G MAC/s (graph optimisation: all)  → kernel ${ratio(binmacs, ortMacs)}×`,
        );

        console.log(
          `\nmodel: ${model.name} from ${source} (T=${model.T}, input ${model.input.join('×')}), ${frames.length} frames in turn`,
        );
        console.log(`  engine (${engineKernel})                        ${engineFps.toFixed(0)} frames/s`);
        console.log(
          `  onnxruntime, ANN twin (optim. all)   ${annFps.toFixed(0)} frames/s  → engine ${ratio(engineFps, annFps)}×`,
        );
        console.log(
          `  onnxruntime, SNN twin (optim. off)   ${snnFps.toFixed(0)} frames/s  → engine ${ratio(engineFps, snnFps)}×`,
        );
        for (const T of stepCounts) {
          const acc = stepsAccuracy.find((a) => a.T === T);
          const fps = stepsFps.get(T)!;
          console.log(
            `  at T=${T}${T === model.T ? ' (its own)' : ''}: ${fps.toFixed(0)} frames/s → ${ratio(fps, annFps)}× the ANN twin; ` +
              (acc
                ? `accuracy ${(100 * acc.accuracy).toFixed(2)}% on ${acc.frames} test frames`
                : `accuracy not measured (${noTestSet})`),
          );
        }
        console.log(
          `  throughput mode, ${threads} threads (wall clock, ${machine.cores} cores here): engine on ${threads} workers ${poolFps.toFixed(0)} frames/s ` +
            `(${ratio(poolFps, oneThreadWallFps)}× its one thread's ${oneThreadWallFps.toFixed(0)}), onnxruntime ANN twin with ${threads} intra-op threads ` +
            `${ortThreadsFps.toFixed(0)} frames/s → engine ${ratio(poolFps, ortThreadsFps)}×`,
        );
        const split = profileSplit(
          await profileFrame(model, frames, { seconds: ROUND_SECONDS / 2, rounds: Math.max(2, rounds) }),
        );
        const pct = (k: string) => `${(100 * split[k]!).toFixed(0)}%`;
        console.log(
          `  per frame (${split.infer_us} µs): first layer conv ${pct('first_layer_conv')}, its LIF ${pct('first_layer_lif')}, binary kernel ${pct('binary_kernel')}, ` +
            `affine + shortcut + LIF + packing ${pct('affine_shortcut_lif_packing')}, pooling ${pct('pooling')}, head + JS ${pct('head_and_js_glue')}, unattributed ${pct('unattributed')}`,
        );
        // Each binary layer's switch to the event path, as the engine measured it for its shape on this machine.
        const switches = model.hidden.map((l, h) =>
          measuredSwitch(l, mapShape(h === 0 ? model.first : model.hidden[h - 1]!)),
        );
        console.log(
          `  event path up to ${model.hidden.map((l, h) => `${l.name} ${(switches[h]! / 10).toFixed(0)}%`).join(', ')} input spikes (measured per layer)`,
        );
        let agentFields: Record<string, number | string> | undefined;
        if (opts.agent) {
          // The whole device path (source → queue → engine → SQLite → MQTT to an embedded broker) on the same model.
          // The agent (broker and subscriber in this process too) can only be timed on the wall clock, so it is
          // compared with a wall-clock engine figure: the best of the alternating rounds above, or (on the CPU
          // clock) of as many rounds again; the agent's best window of the same length stands against it.
          setClock('wall');
          let wallEngineFps = engineFps;
          if (opts.clock !== 'wall') {
            wallEngineFps = 0;
            for (let r = 0; r < rounds; r++)
              wallEngineFps = Math.max(wallEngineFps, (await benchEngine(model, frames, ROUND_SECONDS, 'wasm')).fps);
          }
          setClock(opts.clock);
          const agentRun = await benchAgent(model, {
            seconds: opts.seconds,
            warmupSeconds: 0.5,
            kernel: 'wasm',
            windowSeconds: ROUND_SECONDS,
          });
          agentFields = agentBenchFields(wallEngineFps, agentRun);
          console.log(
            `  device agent (engine + SQLite + MQTT) ${agentFields.agent_fps} frames/s wall clock, best ${ROUND_SECONDS} s window (mean ${agentFields.agent_mean_fps}) → ${agentFields.agent_vs_engine}× the bare engine's ${wallEngineFps.toFixed(0)} (best round; ${agentRun.predictionsReceived} predictions received)`,
          );
          const noCamera = cameraUnavailable();
          if (noCamera) console.log(`  camera path: skipped, ${noCamera}`);
          else {
            const cam = cameraBenchFields(await benchCamera(model, 4 * opts.seconds));
            agentFields = { ...agentFields, ...cam };
            console.log(
              `  camera path (640×480 yuv420p at 30/s into the agent, ${cam.agent_camera_entry}) ${cam.agent_camera_cpu_per_frame_ms} ms CPU per frame = ${cam.agent_camera_vs_infer}× the engine's ${cam.agent_camera_infer_ms} ms per frame; peak RSS ${cam.agent_camera_rss_mb} MB`,
            );
          }
        }
        console.log(
          `\nsize: .bwsnn ${bwsnnBytes} bytes, ANN .onnx ${ann.length} bytes → ${ratio(ann.length, bwsnnBytes)}× smaller`,
        );

        if (opts.json) {
          printJson({
            kernel_shape: s,
            spike_rate: Number(rate.toFixed(4)),
            kernel_binmacs_per_s: Math.round(binmacs),
            kernel_ceiling_binmacs_per_s: Math.round(ceiling),
            ort_conv_macs_per_s: Math.round(ortMacs),
            kernel_vs_ort: ratio(binmacs, ortMacs),
            kernel_vs_ceiling: ratio(binmacs, ceiling),
            model: model.name,
            model_source: source,
            T: model.T,
            model_fps: Number(engineFps.toFixed(1)),
            ort_ann_fps: Number(annFps.toFixed(1)),
            ort_snn_fps: Number(snnFps.toFixed(1)),
            ort_ann_optimization: 'all',
            ort_snn_optimization: 'disabled',
            model_vs_ort_ann: ratio(engineFps, annFps),
            model_vs_ort_snn: ratio(engineFps, snnFps),
            profile_split: split,
            event_switch_per_mille: switches,
            bwsnn_bytes: bwsnnBytes,
            onnx_ann_bytes: ann.length,
            bwsnn_vs_onnx_size: ratio(ann.length, bwsnnBytes),
            ...Object.fromEntries(
              stepCounts.flatMap((T) => {
                const acc = stepsAccuracy.find((a) => a.T === T);
                const fps = stepsFps.get(T)!;
                return [
                  [`t${T}_model_fps`, Number(fps.toFixed(1))],
                  [`t${T}_model_vs_ort_ann`, ratio(fps, annFps)],
                  [`t${T}_accuracy`, acc ? Number(acc.accuracy.toFixed(4)) : null],
                ];
              }),
            ),
            accuracy_frames: stepsAccuracy[0]?.frames ?? 0,
            ...(sparsity ? { sparsity } : {}),
            throughput_threads: threads,
            throughput_clock: 'wall',
            throughput_model_fps: Number(poolFps.toFixed(1)),
            throughput_ort_ann_fps: Number(ortThreadsFps.toFixed(1)),
            throughput_model_vs_ort_ann: ratio(poolFps, ortThreadsFps),
            throughput_model_vs_one_thread: ratio(poolFps, oneThreadWallFps),
            threads: 1,
            clock: opts.clock,
            seconds_per_item: opts.seconds,
            ...(agentFields ?? {}),
            load_average_1m: Number(loadavg()[0]!.toFixed(2)),
            ...machine,
          });
        }
      },
    );
}
