/** Durable file steps for installing an artifact: fsync of files and folders, and free space. */
import * as fs from 'node:fs';

/** Free bytes for an unprivileged writer on the file system holding `dir`; null where fs.statfs is missing (Node < 18.15). */
export function freeBytes(dir: string): number | null {
  const statfs = (fs as { statfsSync?: (p: string) => { bavail: number; bsize: number } }).statfsSync;
  if (typeof statfs !== 'function') return null;
  const s = statfs(dir);
  return s.bavail * s.bsize;
}

export function fsyncFile(path: string): void {
  const fd = fs.openSync(path, 'r+');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Makes a rename in `dir` durable. Some file systems refuse fsync on a folder; the rename then rests on the journal. */
export function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fs.fsyncSync(fd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EPERM' && code !== 'EISDIR') throw err;
  } finally {
    fs.closeSync(fd);
  }
}
