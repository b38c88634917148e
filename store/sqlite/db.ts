/**
 * Opens the embedded SQLite file under DATA_DIR. WAL with synchronous=FULL: a commit that returned
 * is on disk, so a reading acknowledged after its commit survives SIGKILL and power loss.
 * Modules add their own tables with CREATE TABLE IF NOT EXISTS on this handle.
 *
 * File modes: DATA_DIR holds the registry (device secret hashes), API key hashes, the admin key and
 * chain keys, so it is made owner-only (0700) and the database files 0600 (`-wal` and `-shm` too),
 * also for a DATA_DIR or files left more open by an earlier version (chmod on every start).
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { errors } from '../../domain/errors.ts';

export type Db = Database.Database;

export const DATA_DIR_MODE = 0o700;
export const DB_FILE_MODE = 0o600;

/** Creates `dataDir` owner-only, or makes an existing one owner-only. Refuses a shared sticky directory (/tmp). */
export function ensureDataDir(dataDir: string): void {
  fs.mkdirSync(dataDir, { recursive: true, mode: DATA_DIR_MODE });
  const st = fs.statSync(dataDir);
  if (!st.isDirectory()) throw errors.CONFIG_INVALID(`DATA_DIR ${dataDir} is not a directory`);
  // A sticky world-writable directory (/tmp) is shared by design: never chmod it, ask for a directory of our own.
  if (st.mode & 0o1000) throw errors.CONFIG_INVALID(`DATA_DIR ${dataDir} is a shared sticky directory: use a directory of its own`);
  if ((st.mode & 0o777) !== DATA_DIR_MODE) fs.chmodSync(dataDir, DATA_DIR_MODE);
}

/** chmod 0600 on the database file and its -wal/-shm companions that exist. */
function restrictDbFiles(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`, `${file}-journal`]) {
    try {
      if ((fs.statSync(f).mode & 0o777) !== DB_FILE_MODE) fs.chmodSync(f, DB_FILE_MODE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

export function openDatabase(dataDir: string, file = 'mrv.sqlite'): Db {
  ensureDataDir(dataDir);
  const dbPath = path.join(dataDir, file);
  // Created 0600 before SQLite opens it: SQLite gives the -wal and -shm files the main file's mode.
  fs.closeSync(fs.openSync(dbPath, 'a', DB_FILE_MODE));
  restrictDbFiles(dbPath);
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  restrictDbFiles(dbPath);
  return db;
}
