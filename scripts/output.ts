/** Helpers shared by the CLI commands. */

/** Prints the machine-readable summary: one JSON object on the last line of stdout. */
export function printJson(summary: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(summary) + '\n');
}

/** Parses a positive integer CLI option, naming the flag in the error. */
export function positiveInt(flag: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag} must be a positive integer, got ${JSON.stringify(value)}`);
    return n;
  };
}
