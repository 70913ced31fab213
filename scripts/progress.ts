/**
 * What a long training command (`sei train`, `sei ablate`) shows and how it stops: a progress bar on a terminal, a
 * plain line a minute without one (nohup, CI, a log file), a line per epoch; and Ctrl+C or SIGTERM (systemd, kill, a
 * scheduler taking the machine back) asks the run to save a checkpoint after the current batch and return. A second
 * Ctrl+C aborts without saving.
 */
import cliProgress from 'cli-progress';
import type { BatchEvent, FitHooks } from '../trainer/train.js';

export interface TrainingProgress {
  /** The hooks to hand `fit` / `runTraining` / `runAblation`. */
  readonly hooks: Required<FitHooks>;
  /** True once a stop was asked for. */
  stopRequested(): boolean;
  /** Clears the bar and removes the signal handlers. */
  close(): void;
}

/** Progress on stderr for runs of `batchSize` frames a batch; `quiet` keeps only the epoch and info lines. */
export function trainingProgress(opts: { batchSize: number; quiet?: boolean }): TrainingProgress {
  const log = (line: string) => process.stderr.write(line + '\n');
  const tty = !!process.stderr.isTTY;
  let lastLine = 0;
  const bar =
    opts.quiet || !tty
      ? undefined
      : new cliProgress.SingleBar(
          {
            format:
              '{role} epoch {ep}/{epochs} |{bar}| {value}/{total} loss {loss} acc {acc} {ips} img/s ETA {eta_formatted}',
            stream: process.stderr,
            hideCursor: true,
            etaBuffer: 50,
          },
          cliProgress.Presets.shades_classic,
        );
  let barEpoch = '';
  const clearBar = () => {
    bar?.stop();
    barEpoch = '';
  };
  const onBatch = (e: BatchEvent) => {
    if (!bar) {
      if (opts.quiet || Date.now() - lastLine < 60_000) return;
      lastLine = Date.now();
      const eta = ((e.batches - e.batch) * opts.batchSize) / Math.max(1e-9, e.imagesPerSecond);
      log(
        `${new Date().toISOString().slice(11, 19)} ${e.role} epoch ${e.epoch + 1}/${e.epochs} batch ${e.batch}/${e.batches} loss ${e.loss.toFixed(3)} acc ${(100 * e.accuracy).toFixed(1)}% ${e.imagesPerSecond.toFixed(1)} img/s epoch ETA ${(eta / 60).toFixed(0)} min`,
      );
      return;
    }
    const key = `${e.role}${e.epoch}`;
    const payload = {
      role: e.role,
      ep: e.epoch + 1,
      epochs: e.epochs,
      loss: e.loss.toFixed(3),
      acc: (100 * e.accuracy).toFixed(1) + '%',
      ips: e.imagesPerSecond.toFixed(0),
    };
    if (key !== barEpoch) {
      if (barEpoch) bar.stop();
      barEpoch = key;
      bar.start(e.batches, e.batch, payload);
    } else bar.update(e.batch, payload);
  };
  let stopRequested = false;
  const onSignal = () => {
    if (stopRequested) process.exit(130);
    stopRequested = true;
    clearBar();
    log('\nstopping after this batch (Ctrl+C again to abort without saving)…');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    hooks: {
      onBatch,
      onInfo: (line) => {
        clearBar();
        log(line);
      },
      onEpoch: (role, r) => {
        clearBar();
        log(
          `${role} epoch ${r.epoch}: loss ${r.loss.toFixed(4)} train ${(100 * r.trainAccuracy).toFixed(2)}% val ${(100 * r.valAccuracy).toFixed(2)}% ${r.seconds.toFixed(0)} s ${r.imagesPerSecond.toFixed(1)} img/s`,
        );
      },
      shouldStop: () => stopRequested,
    },
    stopRequested: () => stopRequested,
    close: () => {
      clearBar();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
