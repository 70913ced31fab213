/** The trainer's folded evaluation of a .bwsnn file next to the runtime engine's predictions (for `sei eval --compare`). */
import { readBwsnnFile } from '../../runtime/format/index.js';
import { initBackend } from '../backend/index.js';
import type { Split } from '../data/index.js';
import { evaluateFolded } from './evaluate.js';

/** `frames`: the frames the engine predicted, in the model's input shape and label indices. */
export async function compareWithTrainer(
  file: string,
  runtimePredictions: Uint8Array,
  frames: Split,
): Promise<{ trainerAccuracy: number; agreement: number }> {
  await initBackend();
  const model = readBwsnnFile(file);
  const { predictions } = evaluateFolded(model, frames);
  let agree = 0,
    correct = 0;
  for (let i = 0; i < predictions.length; i++) {
    if (predictions[i] === runtimePredictions[i]) agree++;
    if (predictions[i] === frames.labels[i]) correct++;
  }
  return { trainerAccuracy: correct / predictions.length, agreement: agree / predictions.length };
}
