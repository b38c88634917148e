/**
 * Opens the embedded SQLite file under DATA_DIR. WAL with synchronous=FULL: a commit that returned
 * is on disk, so a reading acknowledged after its commit survives SIGKILL and power loss.
 * Modules add their own tables with CREATE TABLE IF NOT EXISTS on this handle.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;

export function openDatabase(dataDir: string, file = 'mrv.sqlite'): Db {
  fs.mkdirSync(dataDir, { recursive: true });
  const db = new Database(path.join(dataDir, file));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  return db;
}
