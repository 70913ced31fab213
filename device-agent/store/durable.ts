/**
 * Durable file steps: the one place that knows the order a write must take to survive a power cut, not only a
 * crash. A crash (kill -9) loses nothing the kernel already holds; a power cut loses whatever is still in the page
 * cache, in any order, including a rename whose file data never reached the disk (an empty or torn file under
 * the final name) and a new directory entry (a file or a rename that vanishes). So at every point whose loss
 * changes what boots: write → fsync(file) → rename → fsync(directory), and only then record the step (SQLite,
 * synchronous=FULL: store/sqlite.ts). ota/README.md ("Power loss") lists the points and what a cut leaves.
 */
import {
  closeSync,
  fdatasyncSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname, resolve } from 'node:path';

/** Flushes a file's data and metadata to the disk. */
export function fsyncFile(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Makes the entries of `dir` (a file created, renamed or removed in it) durable. Some file systems refuse fsync
 * on a folder (EINVAL); there the entry rests on the file system's journal, as nothing better exists.
 */
export function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EPERM' && code !== 'EISDIR') throw err;
  } finally {
    closeSync(fd);
  }
}

/** Creates `dir` and its missing parents, each new entry made durable in its parent. */
export function mkdirDurable(dir: string): void {
  const first = mkdirSync(dir, { recursive: true });
  if (first === undefined) return;
  const top = resolve(first);
  for (let d = resolve(dir); ; d = dirname(d)) {
    fsyncDir(dirname(d));
    if (d === top || d === dirname(d)) break;
  }
}

/** Renames `from` to `to` once `from`'s bytes are on the disk, then makes the new entry durable. */
export function renameDurable(from: string, to: string): void {
  fsyncFile(from);
  renameInPlace(from, to);
}

/**
 * Replaces `path` with `data` atomically across a power cut: a reader (or the next boot) sees the old file or
 * the whole new one. The temp file `<path>.tmp` is in the same folder (a rename never crosses file systems);
 * one left by a cut is overwritten by the next write, and never read.
 */
export function writeFileDurable(path: string, data: Uint8Array): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    for (let at = 0; at < data.length; ) at += writeSync(fd, data, at, data.length - at);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameInPlace(tmp, path);
}

/**
 * Creates (or empties) `path` at `size` bytes, durably: the file, its size and its entry in the folder. For a file
 * filled in place later (writeAtDurable), whose name never makes it live.
 */
export function createFileDurable(path: string, size: number): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  fsyncDir(dirname(path));
}

/**
 * Writes `data` at `position` of an open file and flushes it before returning, so that a step recorded next (a
 * block marked received) never names bytes still in the page cache. fdatasync: the size was made durable by
 * createFileDurable, so only the data (and the blocks' allocation, which fdatasync includes) must follow.
 */
export function writeAtDurable(fd: number, data: Uint8Array, position: number): void {
  for (let at = 0; at < data.length; ) at += writeSync(fd, data, at, data.length - at, position + at);
  fdatasyncSync(fd);
}

/**
 * Removes `path` and makes the removal durable, so that the file does not come back after a cut. Clean-up, never
 * a step of its own: false when the file was not there or could not be removed (the caller's outcome stands).
 */
export function removeDurable(path: string): boolean {
  try {
    unlinkSync(path);
  } catch {
    return false;
  }
  fsyncDir(dirname(path));
  return true;
}

function renameInPlace(from: string, to: string): void {
  renameSync(from, to);
  fsyncDir(dirname(to));
  if (dirname(resolve(from)) !== dirname(resolve(to))) fsyncDir(dirname(from));
}
