/** `finetune`: retrains the active model's head on the labelled frames (finetuner.ts); progress before the reply. */
import type { CommandHandler } from './types.js';

export const finetune: CommandHandler = (args, ctx, progress) => ctx.finetuner.run(args, progress);
