/**
 * Schema migrations for the agent's SQLite file, the one approach for every set of tables in it. Each owner (the
 * state store, OTA) keeps an ordered list of steps and the number of steps applied in its own `<name>_schema`
 * table: the two share one file, so SQLite's single `user_version` could not count for both. A new column or
 * table is a new step at the end of the list; a step, once released, never changes.
 */
import type Database from 'better-sqlite3';

/** Applies the steps of `steps` not yet applied to `db` for `name`, all in one immediate transaction. */
export function migrate(db: Database.Database, name: string, steps: readonly string[]): void {
  const table = `${name}_schema`;
  db.exec(`CREATE TABLE IF NOT EXISTS ${table} (version INTEGER NOT NULL)`);
  db.transaction(() => {
    const row = db.prepare<[], { version: number }>(`SELECT version FROM ${table}`).get();
    const at = row?.version ?? 0;
    for (let v = at; v < steps.length; v++) db.exec(steps[v]!);
    if (!row) db.prepare(`INSERT INTO ${table} (version) VALUES (?)`).run(steps.length);
    else if (at < steps.length) db.prepare(`UPDATE ${table} SET version = ?`).run(steps.length);
  }).immediate();
}
