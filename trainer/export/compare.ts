/** The trainer's folded evaluation of a .bwsnn file next to the runtime engine's predictions (for `sei eval --compare`). */
import { readBwsnnFile } from '../../runtime/format/index.js';
import { initBackend } from '../backend/index.js';
import { loadDataset } from '../data/index.js';
import { evaluateFolded } from './evaluate.js';

export async function compareWithTrainer(file: string, runtimePredictions: Uint8Array, dataDir?: string): Promise<{ trainerAccuracy: number; agreement: number }> {
  await initBackend();
  const model = readBwsnnFile(file);
  const data = loadDataset({ ...(dataDir ? { dir: dataDir } : {}), valSize: 0, testLimit: runtimePredictions.length });
  const { predictions } = evaluateFolded(model, data.test);
  let agree = 0, correct = 0;
  for (let i = 0; i < predictions.length; i++) {
    if (predictions[i] === runtimePredictions[i]) agree++;
    if (predictions[i] === data.test.labels[i]) correct++;
  }
  return { trainerAccuracy: correct / predictions.length, agreement: agree / predictions.length };
}
