/** Helpers shared by the CLI commands. */

/** Prints the machine-readable summary: one JSON object on the last line of stdout. */
export function printJson(summary: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(summary) + '\n');
}
