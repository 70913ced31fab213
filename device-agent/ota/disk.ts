/** Free space on the disk that receives an artifact (the durable file steps are in ../store/durable.ts). */
import * as fs from 'node:fs';

/** Free bytes for an unprivileged writer on the file system holding `dir`; null where fs.statfs is missing (Node < 18.15). */
export function freeBytes(dir: string): number | null {
  const statfs = (fs as { statfsSync?: (p: string) => { bavail: number; bsize: number } }).statfsSync;
  if (typeof statfs !== 'function') return null;
  const s = statfs(dir);
  return s.bavail * s.bsize;
}
