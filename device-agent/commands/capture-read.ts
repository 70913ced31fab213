/**
 * `capture-read`: {id, blocks: [index, ...], blockSize?} returns those blocks (`blockSize` bytes each, default
 * CAPTURE_BLOCK, 256..65536; the last shorter) of a
 * captured frame's PNG, base64 with each block's SHA-256, at most 8 per request: `sei capture pull` fetches a frame
 * block by block, like an OTA artifact, and resumes where it stopped.
 */
import { createHash } from 'node:crypto';
import { ConfigError, show } from '../../runtime/index.js';
import { BLOCK_RANGE, CAPTURE_BLOCK } from '../capture/index.js';
import type { CaptureReadResult } from '../messages.js';
import { blockCount } from '../ota/protocol.js';
import type { CommandHandler } from './types.js';

/** Blocks one request may ask for. */
export const MAX_BLOCKS = 8;

export const captureRead: CommandHandler = (args, ctx): CaptureReadResult => {
  const id = args.id;
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 1)
    throw new ConfigError(`capture-read: id: expected a capture id (integer >= 1), got ${show(id)}`, 'id');
  const rec = ctx.capture.store.get(id);
  if (!rec)
    throw new ConfigError(
      `capture-read: id: expected a frame the store keeps, got ${id} (never captured, or dropped to make room)`,
      'id',
    );
  const blockSize = args.blockSize ?? CAPTURE_BLOCK;
  if (
    typeof blockSize !== 'number' ||
    !Number.isInteger(blockSize) ||
    blockSize < BLOCK_RANGE.min ||
    blockSize > BLOCK_RANGE.max
  )
    throw new ConfigError(
      `capture-read: blockSize: expected an integer in [${BLOCK_RANGE.min}, ${BLOCK_RANGE.max}], got ${show(args.blockSize)}`,
      'blockSize',
    );
  const n = blockCount(rec.size, blockSize);
  const wanted = args.blocks;
  if (
    !Array.isArray(wanted) ||
    wanted.length < 1 ||
    wanted.length > MAX_BLOCKS ||
    !wanted.every((i) => Number.isInteger(i) && i >= 0 && i < n)
  )
    throw new ConfigError(
      `capture-read: blocks: expected 1..${MAX_BLOCKS} block indices in [0, ${n - 1}], got ${show(wanted)}`,
      'blocks',
    );
  const blocks = (wanted as number[]).map((index) => {
    const bytes = ctx.capture.store.block(id, index, blockSize);
    if (!bytes)
      throw new ConfigError(`capture-read: id: expected a frame the store keeps, got ${id} (dropped meanwhile)`, 'id');
    return { index, data: bytes.toString('base64'), sha256: createHash('sha256').update(bytes).digest('hex') };
  });
  return { id, size: rec.size, sha256: rec.sha256, blocks };
};
