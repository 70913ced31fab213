/** Helpers shared by the CLI commands. */
import { readFileSync, writeFileSync } from 'node:fs';

/**
 * Puts `section` (which starts with `begin` and ends with `end`) in the text file `path` in place of what stands
 * from `begin` to `end`, or appends it after a blank line when the file has no such markers (a missing file is
 * created). For the generated parts of markdown files (tables of results, config docs).
 */
export function writeMarkedSection(path: string, begin: string, end: string, section: string): void {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    // a new file
  }
  const from = text.indexOf(begin);
  const to = text.indexOf(end);
  writeFileSync(
    path,
    from >= 0 && to > from
      ? text.slice(0, from) + section + text.slice(to + end.length)
      : `${text}${!text || text.endsWith('\n\n') ? '' : text.endsWith('\n') ? '\n' : '\n\n'}${section}\n`,
  );
}

/** Prints the machine-readable summary: one JSON object on the last line of stdout. */
export function printJson(summary: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(summary) + '\n');
}
