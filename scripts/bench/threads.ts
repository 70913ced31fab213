/**
 * Throughput mode for `sei bench`: frames/s of the engine on an EnginePool of N workers (runtime/pool), fed so that
 * every worker always has a frame in hand and the next one waiting — what `sei run --threads N` and the agent's
 * engine.threads do with a queue of frames. Timed on the wall clock whatever `--clock` says: the figure is frames
 * per second of elapsed time from N cores, which the process's CPU time cannot give. The onnxruntime side is
 * ortFrames with N intra-op threads (./ort.ts).
 */
import { createEngine, EnginePool } from '../../runtime/index.js';
import type { BwsnnModel } from '../../runtime/index.js';
import type { Rounds } from './ort.js';

/** Frames in flight per worker: EnginePool's default depth. */
const DEPTH = 2;

/** A started pool on `model` cycling through `frames`: each call measures for `seconds`, giving the best frames/s yet. */
export async function poolFrames(
  model: BwsnnModel,
  frames: readonly Uint8Array[],
  threads: number,
): Promise<{ readonly rounds: Rounds; close(): Promise<void> }> {
  const pool = await EnginePool.start(createEngine(model, { kernel: 'wasm' }), { threads, depth: DEPTH });
  let next = 0;
  let best = 0;
  /** `lanes` chains of frames, each waiting for its frame before it sends the next, until `until` (ms). */
  const run = async (until: number) => {
    let done = 0;
    const lane = async () => {
      while (performance.now() < until) {
        await pool.infer(frames[next++ % frames.length]!);
        done++;
      }
    };
    await Promise.all(Array.from({ length: threads * DEPTH }, lane));
    return done;
  };
  await run(performance.now() + 250);
  return {
    rounds: async (seconds) => {
      const start = performance.now();
      const done = await run(start + seconds * 1000);
      best = Math.max(best, done / ((performance.now() - start) / 1000));
      return best;
    },
    close: () => pool.close(),
  };
}
