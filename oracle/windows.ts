/**
 * What a regulator reads per window (the dashboard's charts, `GET /v1/facilities/{id}/windows`): for
 * each window of a facility, its emissions by source (grid import, gas, direct, export credit), actual,
 * baseline and net, coverage, and each device's consumption. Read-only, exact decimals, computed by the
 * methodology's own functions (methodology.ts `settleWindow`, `emissionsBySource`; inputs.ts):
 *  - a settled window shows its record: totals, factors, baseline, net and coverage as settled; the
 *    per-device figures come from recomputing it with its recorded inputs (as `/verify` does), and
 *    `recomputedMatches` says whether that recomputation still gives the record's net and totals;
 *  - a window not settled yet is projected as the oracle will compute it: from the cursors the
 *    previous window ended on (a settlement's record, or the projection before it), under what the
 *    store holds now. It is provisional: a reading arriving before it settles still changes it.
 */
import type { Window } from '../domain/window.ts';
import { firstWindowStart } from './chain-sync.ts';
import { currentInputs, recordedWindowInputs } from './inputs.ts';
import { emissionsBySource, settleWindow, type CoverageStatus, type MetricTotals, type WindowResult } from './methodology.ts';
import { recordedMark, recordedPrev, type Awaitable, type DeviceCursor, type Facility, type FacilityRegistry, type ReadingStore, type ReadingVoid, type Settlement, type SettlementQuery } from '../store/types.ts';

/** Where the figures come from: the reading store, the registry and the confirmed settlements. */
export interface WindowSources {
  readings: ReadingStore;
  registry: FacilityRegistry;
  /** Confirmed settlements (SettlementReader.listSettlements semantics: windowStart in [from, to)). */
  listSettlements(q: SettlementQuery): Promise<Settlement[]> | Settlement[];
  /** The regulator's voids: a projection leaves voided readings out, as the oracle will. */
  voids?: { voidsOf(deviceIds: string[]): Awaitable<ReadingVoid[]> };
}

export interface DeviceFigures {
  deviceId: string;
  /** The coverage verdict of the device in this window ('ok': it does not make the window incomplete). */
  status: CoverageStatus;
  /** What its readings add up to in the window, per metric, normalised units (kWh, m3, kg). */
  totals: MetricTotals;
}

export interface WindowFigures {
  window: Window;
  /** A confirmed settlement exists for the window. */
  settled: boolean;
  settlementId: string | null;
  /** The window has not ended yet (its figures so far). */
  open: boolean;
  complete: boolean;
  /** kg CO2e, exact decimal text: import x EF_grid, gas x EF_gas, co2_direct, export x EF_grid (subtracted). */
  emissionsKg: { gridImport: string; gas: string; direct: string; exportCredit: string };
  actualKg: string;
  baselineKg: string;
  /** Integer grams: the settled net, or what the oracle would settle now. */
  netGrams: string;
  totals: MetricTotals;
  devices: DeviceFigures[];
  /** Settled windows: whether recomputing from the stored readings still gives the record's net and totals. */
  recomputedMatches?: boolean;
}

export interface WindowRange {
  /** Window starts from `from` (aligned down to a window start) up to, not including, `to`. */
  from: number;
  to: number;
  windowMs: number;
  now: number;
}

const NO_MARK = Object.freeze({ maxSeq: -1, late: 0 });

/** The device cursors a confirmed settlement leaves (what OracleRecords.confirm writes). */
function cursorsOfSettlement(s: Settlement): Map<string, DeviceCursor> {
  const out = new Map<string, DeviceCursor>();
  for (const d of s.inputs.devices) {
    const mark = recordedMark(d) ?? recordedPrev(d)?.mark ?? NO_MARK;
    out.set(d.deviceId, { deviceId: d.deviceId, facilityId: s.facilityId, settlementId: s.id, windowEnd: s.windowEnd, mark, cursors: d.endCursors });
  }
  return out;
}

/** The device cursors a computed window would leave once confirmed. */
function cursorsOfResult(r: WindowResult): Map<string, DeviceCursor> {
  const out = new Map<string, DeviceCursor>();
  for (const d of r.devices) {
    const mark = d.mark ?? d.prev?.mark ?? NO_MARK;
    out.set(d.deviceId, { deviceId: d.deviceId, facilityId: r.facilityId, settlementId: '', windowEnd: r.window.end, mark, cursors: d.endCursors });
  }
  return out;
}

function bySource(totals: MetricTotals, factors: { gridKgPerKwh: string; gasKgPerM3: string }) {
  const e = emissionsBySource(totals, factors);
  return {
    emissionsKg: { gridImport: e.gridImportKg.toString(), gas: e.gasKg.toString(), direct: e.directKg.toString(), exportCredit: e.exportCreditKg.toString() },
    actualKg: e.actualKg.toString(),
  };
}

const devicesOf = (r: WindowResult): DeviceFigures[] => r.devices.map((d) => ({ deviceId: d.deviceId, status: d.status, totals: d.totals }));

const sameTotals = (a: MetricTotals, b: MetricTotals) => (Object.keys(a) as (keyof MetricTotals)[]).every((k) => a[k] === b[k]);

/** A settled window: the record's figures, the devices' from its recomputation. */
async function settledFigures(readings: ReadingStore, s: Settlement, open: boolean): Promise<WindowFigures> {
  const rec = s.inputs;
  let devices: DeviceFigures[] = [];
  let recomputedMatches = false;
  try {
    const r = settleWindow(await recordedWindowInputs(readings, s));
    devices = devicesOf(r);
    recomputedMatches = r.netGrams.toString() === s.netGrams && sameTotals(r.totals, rec.totals);
  } catch {
    // A methodology this code no longer recomputes: the record's figures stand alone.
  }
  return {
    window: { start: s.windowStart, end: s.windowEnd },
    settled: true,
    settlementId: s.id,
    open,
    complete: s.complete,
    ...bySource(rec.totals, rec.factors),
    baselineKg: rec.baselineKg,
    netGrams: s.netGrams,
    totals: rec.totals,
    devices,
    recomputedMatches,
  };
}

/** A window not settled: the methodology over the inputs the oracle would take now. */
function projectedFigures(r: WindowResult, open: boolean): WindowFigures {
  return {
    window: { start: r.window.start, end: r.window.end },
    settled: false,
    settlementId: null,
    open,
    complete: r.complete,
    ...bySource(r.totals, r.factors),
    baselineKg: r.baselineKg,
    netGrams: r.netGrams.toString(),
    totals: r.totals,
    devices: devicesOf(r),
  };
}

/**
 * The figures of every window of `facility` starting in [range.from aligned down, range.to), from its
 * first window on, oldest first. The caller bounds the range (each window reads every device's
 * readings once or twice).
 */
export async function windowFigures(src: WindowSources, facility: Facility, range: WindowRange): Promise<WindowFigures[]> {
  const W = range.windowMs;
  const start = Math.max(Math.floor(range.from / W) * W, firstWindowStart(facility, W));
  if (start >= range.to || start > range.now) return [];
  const settled = new Map<number, Settlement>();
  for (const s of await src.listSettlements({ facilityId: facility.id, from: start, to: range.to, limit: 10_000 })) {
    if (!settled.has(s.windowStart)) settled.set(s.windowStart, s);
  }
  // Where the cursors stand at `start`: the last settlement before it, then its unsettled windows
  // up to `start` as one span (the end cursors of a span are those of its windows in turn).
  const [last] = await src.listSettlements({ facilityId: facility.id, to: start, newestFirst: true, limit: 1 });
  let cursors = last ? cursorsOfSettlement(last) : new Map<string, DeviceCursor>();
  const records = { cursor: (deviceId: string) => cursors.get(deviceId) };
  const inputsSrc = { readings: src.readings, registry: src.registry, records, ...(src.voids ? { voids: src.voids } : {}) };
  const caughtUpFrom = last ? last.windowEnd : firstWindowStart(facility, W);
  if (caughtUpFrom < start) cursors = cursorsOfResult(settleWindow(await currentInputs(inputsSrc, facility, { start: caughtUpFrom, end: start })));

  const out: WindowFigures[] = [];
  // Windows that start after now hold nothing yet.
  for (let ws = start; ws < range.to && ws <= range.now; ws += W) {
    const w: Window = { start: ws, end: ws + W };
    const open = range.now < w.end;
    const s = settled.get(ws);
    if (s) {
      out.push(await settledFigures(src.readings, s, open));
      cursors = cursorsOfSettlement(s);
    } else {
      const r = settleWindow(await currentInputs(inputsSrc, facility, w));
      out.push(projectedFigures(r, open));
      cursors = cursorsOfResult(r);
    }
  }
  return out;
}
