/**
 * A trained network's test accuracy, scored the one way `sei train`'s summary, `sei ablate`'s rows and `sei export`'s
 * card baselines all report it: with its batch-norm statistics recalibrated on training frames (what `sei export`
 * ships by default, and how a teacher distils: the running averages trail the final weights), and for a binary
 * student optionally by the folded model's own arithmetic (what the box runs) instead of the unfolded network.
 * Recalibrating recalibrated statistics changes nothing, so settled parameters score the same.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Dataset } from './data/index.js';
import { foldModel } from './export/bwsnn.js';
import { evaluateFolded } from './export/evaluate.js';
import type { NetParams } from './model.js';
import { exportable } from './model.js';
import { disposeBnStatistics, recalibrateBn, recalibration } from './recalibrate.js';
import type { TrainConfig } from './train.js';
import { accuracy, predict, teacherNet } from './train.js';

export interface Score {
  readonly accuracy: number;
  /** Test frames scored. */
  readonly n: number;
  /** Scored by the folded model (asked for with `folded`, and the format holds the network: `exportable`). */
  readonly folded: boolean;
  /** The unfolded network's accuracy on the same frames (equal to `accuracy` when not `folded`). */
  readonly unfoldedAccuracy: number;
  /** Spike rate per layer over the test frames (the unfolded network's); absent for the ANN. */
  readonly spikeRates?: readonly number[];
}

/**
 * Scores `params` (a run's `role` network under `cfg`) on `data.test`, recalibrating on `recalibrate` batches of
 * `data.train` (default RECALIBRATE_BATCHES). `folded`: a binary student is scored by its folded model, not by the
 * unfolded network, when the .bwsnn format holds it (a `blocks` layout does not: it is scored unfolded).
 */
export function scoreNetwork(
  cfg: TrainConfig,
  params: NetParams,
  role: 'student' | 'teacher',
  data: Pick<Dataset, 'train' | 'test' | 'labels'>,
  opts: { folded?: boolean; recalibrate?: number } = {},
): Score {
  const { test } = data;
  const net = role === 'teacher' ? teacherNet(cfg.net) : cfg.net;
  const rec = recalibrateBn(net, params, data.train, recalibration(cfg, opts.recalibrate));
  try {
    const unfolded = predict(net, rec, test);
    const unfoldedAccuracy = accuracy(unfolded.predictions, test.labels);
    const folded = Boolean(opts.folded) && role === 'student' && net.weights === 'binary' && exportable(net);
    return {
      accuracy: folded
        ? accuracy(
            evaluateFolded(foldModel(net, rec, { name: 'score', labels: data.labels }), test).predictions,
            test.labels,
          )
        : unfoldedAccuracy,
      folded,
      unfoldedAccuracy,
      n: test.count,
      ...(role === 'student' ? { spikeRates: unfolded.spikeRates } : {}),
    };
  } finally {
    disposeBnStatistics(rec, params);
  }
}

/** Bumped when scoring changes, so a kept score of the older method is computed again. */
const SCORE_METHOD = 1;

/**
 * `scoreNetwork` for the finished run in `runDir`, kept in `runDir/score.json` beside its checkpoint: a resumed
 * ablation reuses it instead of scoring the same network again (minutes a row). It is keyed by a digest of what the
 * score depends on (the checkpoint, the training frames BN is recalibrated on, the test frames and labels, the
 * scoring method and options), so any change scores the run again.
 */
export function keptScore(
  runDir: string,
  cfg: TrainConfig,
  params: NetParams,
  role: 'student' | 'teacher',
  data: Pick<Dataset, 'train' | 'test' | 'labels'>,
  opts: { folded?: boolean; recalibrate?: number } = {},
): Score {
  const file = join(runDir, 'score.json');
  const key = { ...(opts.folded ? { folded: true } : {}), recalibrate: recalibration(cfg, opts.recalibrate) };
  const hash = createHash('sha256').update(JSON.stringify({ method: SCORE_METHOD, opts: key }));
  for (const name of ['last.json', 'last.bin']) hash.update(readFileSync(join(runDir, name)));
  for (const bytes of [data.train.images, data.test.images, data.test.labels]) hash.update(bytes);
  const digest = hash.digest('hex');
  if (existsSync(file)) {
    try {
      const kept = JSON.parse(readFileSync(file, 'utf8')) as { digest?: string; score?: Score };
      if (kept.digest === digest && kept.score) return kept.score;
    } catch {
      // An unreadable file is scored again and replaced.
    }
  }
  const score = scoreNetwork(cfg, params, role, data, opts);
  writeFileSync(`${file}.tmp`, `${JSON.stringify({ digest, score }, null, 1)}\n`);
  renameSync(`${file}.tmp`, file);
  return score;
}
