/**
 * Voids applied to one device's inputs of a window (SPEC "Methodology", corrections): readings a
 * regulator voided (from <= ts < to) stay stored but no settlement uses them. Written once, over the
 * ReadingStore contract's own queries, so SQLite, InfluxDB and PostgreSQL stores all serve it:
 * - the consumed set loses them (they are handed to the methodology as `excluded`, which never counts
 *   them: oracle/methodology.ts);
 * - the coverage facts are those of the remaining readings: `before` / `lastIn` are the greatest-seq
 *   visible readings outside every void, `after` needs a reading outside every void, and `between`
 *   counts only readings outside them (so a voided interval reading between two others is a gap).
 *   A voided reading therefore never makes a window complete.
 * Returns which voids mattered: a settlement records exactly those (RecordedInputs.voids) and its
 * evidence commits to them, so a recomputation applies the same ones.
 */
import type { Reading } from '../domain/reading.ts';
import type { Window } from '../domain/window.ts';
import type { DeviceCoverage, ReadingStore, RecordedVoid, VisibilityMark } from '../store/types.ts';

/** The latest ts a store query takes as "no upper bound". */
const END_OF_TIME = Number.MAX_SAFE_INTEGER;

/** The void containing `ts`, if any. */
export function voidAt(voids: readonly RecordedVoid[], ts: number): RecordedVoid | undefined {
  return voids.find((v) => v.from <= ts && ts < v.to);
}

/** Whether the reading (by its ts) is voided by one of `voids`. */
export const isVoided = (voids: readonly RecordedVoid[], r: { ts: number }): boolean => voidAt(voids, r.ts) !== undefined;

/** The time ranges of [from, to) outside every void, in order. */
export function outsideVoids(voids: readonly RecordedVoid[], from: number, to: number): [number, number][] {
  const cuts = voids.filter((v) => v.to > from && v.from < to).sort((a, b) => a.from - b.from);
  const out: [number, number][] = [];
  let at = from;
  for (const v of cuts) {
    if (v.from > at) out.push([at, Math.min(v.from, to)]);
    at = Math.max(at, v.to);
    if (at >= to) break;
  }
  if (at < to) out.push([at, to]);
  return out;
}

export interface VoidedDevice {
  readings: Reading[];
  excluded: Reading[];
  coverage: DeviceCoverage;
  /** Ids of the voids that excluded a reading or changed a coverage fact. */
  used: Set<number>;
}

/**
 * The device's consumed readings and coverage facts of window `w` under `mark` without the voided
 * readings. `voids` are the device's own.
 */
export async function applyVoids(
  store: ReadingStore,
  deviceId: string,
  w: Window,
  mark: VisibilityMark,
  consumed: Reading[],
  coverage: DeviceCoverage,
  voids: readonly RecordedVoid[],
): Promise<VoidedDevice> {
  const used = new Set<number>();
  if (voids.length === 0) return { readings: consumed, excluded: [], coverage, used };
  const note = (ts: number): boolean => {
    const v = voidAt(voids, ts);
    if (v) used.add(v.id);
    return v !== undefined;
  };
  const readings: Reading[] = [];
  const excluded: Reading[] = [];
  for (const r of consumed) (note(r.ts) ? excluded : readings).push(r);

  // before: the greatest-seq visible reading with ts < w.start outside every void (ts never
  // decreases along seq, so it is the latest one before the first void that holds the current one).
  let before = coverage.before;
  while (before && note(before.ts)) {
    const v = voidAt(voids, before.ts) as RecordedVoid;
    before = (await store.coverage({ deviceId, start: v.from, end: v.from + 1, mark })).before;
  }
  // lastIn: likewise within [w.start, w.end).
  let lastIn = coverage.lastIn;
  while (lastIn && note(lastIn.ts)) {
    const v = voidAt(voids, lastIn.ts) as RecordedVoid;
    lastIn = v.from <= w.start ? undefined : (await store.coverage({ deviceId, start: w.start, end: v.from, mark })).lastIn;
  }
  // after: a visible reading at or after w.end outside every void.
  let after = coverage.after;
  if (after && voids.some((v) => v.to > w.end)) {
    after = false;
    for (const [a, b] of outsideVoids(voids, w.end, END_OF_TIME)) {
      if (await store.hasReading(deviceId, a, b, mark)) {
        after = true;
        break;
      }
    }
    if (!after) for (const v of voids) if (v.to > w.end) used.add(v.id);
  }
  // between: visible readings with before.seq < seq <= lastIn.seq outside every void.
  let between = before && lastIn ? coverage.between : 0;
  if (before && lastIn && (before !== coverage.before || lastIn !== coverage.lastIn || voids.some((v) => v.to > before!.ts && v.from <= lastIn!.ts))) {
    const range = await store.consume({ deviceId, mark, before: lastIn.ts + 1, prev: { mark, before: before.ts } });
    between = 0;
    for (const r of range) {
      if (r.seq <= before.seq || r.seq > lastIn.seq) continue;
      if (note(r.ts)) continue;
      between++;
    }
  }
  const out: DeviceCoverage = { after, between, interval: coverage.interval };
  if (before) out.before = { seq: before.seq, ts: before.ts };
  if (lastIn) out.lastIn = { seq: lastIn.seq, ts: lastIn.ts };
  return { readings, excluded, coverage: out, used };
}
