/**
 * The fine-tuning stages are generators that yield progress (so an agent can interleave them with its event loop);
 * this runs one to its end in one go.
 */
export function runSteps<Y, R>(steps: Generator<Y, R>, onStep?: (step: Y) => void): R {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    onStep?.(step.value);
  }
}
