/**
 * A settlement's inputs, gathered in one place for the two callers that need them: settle.ts computes
 * a window from what the registry and the records say now (facility, baseline in force, devices,
 * the cursors the previous window ended on, visibility marks), audit.ts recomputes a recorded
 * settlement from what its record says it used. Both then read the consumed readings and the coverage
 * under each device's mark the same way (`readDevices`) and evaluate with `evaluate`, so a settlement
 * and its verification cannot drift apart.
 */
import { errors } from '../domain/errors.ts';
import { isIntervalKind } from '../domain/reading.ts';
import type { Window } from '../domain/window.ts';
import { DEFAULT_REPORTING_INTERVAL_SECONDS, type Awaitable, type Facility, type ReadingStore, type FacilityRegistry, type ReadingVoid, type RecordedVoid, type VisibilityMark } from '../store/types.ts';
import { applyVoids } from './voids.ts';
import type { Reading } from '../domain/reading.ts';
import { chainContext } from '../audit/bundle.ts';
import { buildEvidence, type Evidence } from './evidence.ts';
import { applyFactors, sealFactors } from './factors.ts';
import { settleWindow, METHODOLOGY_V2, METHODOLOGY_VERSION, NO_COVERAGE, SUPPORTED_VERSIONS, type DeviceWindowInput, type WindowInput, type WindowResult } from './methodology.ts';
import { isVisible, recordedMark, recordedPrev, type OracleRecords, type RecordedInputs, type SettlementRow } from '../store/types.ts';

/** Another process moved this facility on while we computed: not an error, the next round continues. */
export class Raced extends Error {}

/** What a device contributes before its readings are read: cursors, previous settlement, mark. */
type DevicePlan = Omit<DeviceWindowInput, 'readings' | 'coverage'>;

/**
 * The stored reading with the greatest seq below `r.seq` that is visible under `mark` (the hash
 * chain's predecessor of `r` as the settlement saw the store), with the ReadingStore's own queries:
 * seq - 1 (the usual case), else, since ts never decreases along seq, the greatest seq among the
 * visible readings with ts equal to r's, else the greatest-seq visible reading before r.ts.
 */
export async function visibleBelow(store: ReadingStore, r: Reading, mark: VisibilityMark): Promise<Reading | undefined> {
  const next = await store.get(r.deviceId, r.seq - 1);
  if (next && isVisible(next, mark)) return next;
  const sameTs = await store.consume({ deviceId: r.deviceId, mark, before: r.ts + 1, prev: { mark, before: r.ts } });
  let best: Reading | undefined;
  for (const x of sameTs) if (x.seq < r.seq && (!best || x.seq > best.seq)) best = x;
  if (best) return best;
  const c = await store.coverage({ deviceId: r.deviceId, start: r.ts, end: r.ts + 1, mark });
  return c.before ? store.get(r.deviceId, c.before.seq) : undefined;
}

/**
 * Reads, for each planned device, the consumed set, the coverage facts and the chain context under its
 * mark, without the readings `voids` void (oracle/voids.ts). Returns the voids that mattered, by id.
 */
async function readDevices(
  readings: ReadingStore,
  w: Window,
  plans: DevicePlan[],
  version: string,
  voids: readonly RecordedVoid[] = [],
): Promise<{ devices: DeviceWindowInput[]; voids: RecordedVoid[] }> {
  const out: DeviceWindowInput[] = [];
  const used = new Set<number>();
  for (const plan of plans) {
    const input: DeviceWindowInput = { ...plan, readings: [], coverage: NO_COVERAGE };
    const mark = plan.mark;
    if (mark !== undefined) {
      const consumed = await readings.consume({ deviceId: plan.deviceId, mark, before: w.end, ...(plan.prev ? { prev: plan.prev } : {}) });
      const coverage = await readings.coverage({ deviceId: plan.deviceId, start: w.start, end: w.end, mark });
      const own = voids.filter((v) => v.deviceId === plan.deviceId);
      const applied = await applyVoids(readings, plan.deviceId, w, mark, consumed, coverage, own);
      input.readings = applied.readings;
      input.coverage = applied.coverage;
      if (applied.excluded.length) input.excluded = applied.excluded;
      for (const id of applied.used) used.add(id);
      if (version !== METHODOLOGY_V2 && input.readings.some((r) => r.sig !== undefined)) {
        const bySeq = new Map(input.readings.map((r) => [r.seq, r]));
        input.chainContext = await chainContext(input.readings, (seq) => visibleBelow(readings, bySeq.get(seq) as Reading, mark));
      }
    }
    out.push(input);
  }
  return { devices: out, voids: voids.filter((v) => used.has(v.id)).sort((a, b) => a.id - b.id) };
}

/** A void as settlements record it. */
export const recordedVoid = (v: ReadingVoid | RecordedVoid): RecordedVoid => ({ id: v.id, deviceId: v.deviceId, from: v.from, to: v.to, reason: v.reason });

export interface InputSources {
  readings: ReadingStore;
  registry: FacilityRegistry;
  /** Where each device's register cursors stand (the oracle's records; oracle/windows.ts projects them). */
  records: Pick<OracleRecords, 'cursor'>;
  /** The regulator's voids (absent: none are applied). */
  voids?: { voidsOf(deviceIds: string[]): Awaitable<ReadingVoid[]> };
}

/**
 * Inputs of window `w` for `facility` as they stand now: every device of the facility created before
 * the window end, whatever its status (a suspended device stays in coverage; a decommissioned one
 * leaves coverage but its readings still count), with its cursors, visibility mark, consumed readings
 * and coverage; the factors and the baseline in force at the window start. Throws Raced when another
 * oracle on this file confirmed this window meanwhile.
 */
export async function currentInputs(src: InputSources, facility: Facility, w: Window): Promise<WindowInput> {
  // Devices registered after the window ended had nothing to report in it: they do not make it incomplete.
  const devices = src.registry.listDevices(facility.id).filter((d) => d.createdAt < w.end);
  const ids = devices.map((d) => d.deviceId);
  const marks = ids.length ? await src.readings.marks(ids) : new Map<string, VisibilityMark>();
  const cursors = await Promise.all(devices.map((d) => src.records.cursor(d.deviceId)));
  const plans: DevicePlan[] = devices.map((d, i) => {
    const c = cursors[i];
    if (c && c.windowEnd > w.start) throw new Raced(`device ${d.deviceId} cursor moved to ${c.windowEnd} while computing window ${w.start}`);
    const mark = marks.get(d.deviceId);
    return {
      deviceId: d.deviceId,
      startCursors: c?.cursors ?? [],
      reportingIntervalSeconds: d.reportingIntervalSeconds ?? DEFAULT_REPORTING_INTERVAL_SECONDS,
      intervalDevice: isIntervalKind(d.kind),
      ...(d.status === 'decommissioned' ? { decommissioned: { at: d.decommissionedAt ?? 0, reason: d.decommissionReason ?? '' } } : {}),
      ...(c ? { prev: { mark: c.mark, before: c.windowEnd } } : {}),
      ...(mark !== undefined ? { mark } : {}),
    };
  });
  const voids = src.voids ? (await src.voids.voidsOf(ids)).map(recordedVoid) : [];
  const read = await readDevices(src.readings, w, plans, METHODOLOGY_VERSION, voids);
  return {
    facilityId: facility.id,
    window: w,
    devices: read.devices,
    factors: applyFactors(w.start, facility),
    baselineKgPerHour: src.registry.baselineAt(facility.id, w.start),
    methodologyVersion: METHODOLOGY_VERSION,
    ...(read.voids.length ? { voids: read.voids } : {}),
  };
}

/**
 * Inputs of a recorded settlement: its recorded devices, visibility marks, cursors, factors, baseline
 * and voids. `voids` replaces the recorded voids (a correction's recomputation under the voids now in force).
 */
export async function recordedWindowInputs(
  readings: ReadingStore,
  row: Pick<SettlementRow, 'facilityId' | 'windowStart' | 'windowEnd' | 'inputs'>,
  voids?: readonly RecordedVoid[],
): Promise<WindowInput> {
  const version = row.inputs.methodologyVersion;
  if (!SUPPORTED_VERSIONS.includes(version)) {
    throw errors.METHODOLOGY_MISMATCH(`settlement was computed with methodology ${version}; this oracle recomputes ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  const w: Window = { start: row.windowStart, end: row.windowEnd };
  const plans: DevicePlan[] = row.inputs.devices.map((d) => {
    const prev = recordedPrev(d);
    const mark = recordedMark(d);
    return {
      deviceId: d.deviceId,
      startCursors: d.startCursors,
      reportingIntervalSeconds: d.reportingIntervalSeconds,
      intervalDevice: d.intervalDeclared,
      ...(d.decommissioned ? { decommissioned: d.decommissioned } : {}),
      ...(prev ? { prev } : {}),
      ...(mark !== undefined ? { mark } : {}),
    };
  });
  const read = await readDevices(readings, w, plans, version, voids ?? row.inputs.voids ?? []);
  return {
    facilityId: row.facilityId,
    window: w,
    devices: read.devices,
    factors: sealFactors(row.inputs.factors),
    baselineKgPerHour: row.inputs.baselineKgPerHour,
    methodologyVersion: version,
    ...(read.voids.length ? { voids: read.voids } : {}),
    ...(row.inputs.correction ? { correction: row.inputs.correction } : {}),
  };
}

/** The methodology's result over `input` and its evidence tree. */
export function evaluate(input: WindowInput): { result: WindowResult; evidence: Evidence } {
  const result = settleWindow(input);
  return { result, evidence: buildEvidence(result) };
}

/** What a settlement records of its inputs, so that it can be recomputed (recordedWindowInputs). */
export function recordedInputs(r: WindowResult, devices: DeviceWindowInput[]): RecordedInputs {
  const declared = new Map(devices.map((d) => [d.deviceId, d.intervalDevice === true]));
  return {
    methodologyVersion: r.methodologyVersion,
    baselineKgPerHour: r.baselineKgPerHour,
    factors: r.factors,
    devices: r.devices.map((d) => ({
      deviceId: d.deviceId,
      ...(d.mark !== undefined ? { mark: d.mark } : {}),
      ...(d.prev ? { prev: d.prev } : {}),
      startCursors: d.startCursors,
      endCursors: d.endCursors,
      reportingIntervalSeconds: d.reportingIntervalSeconds,
      intervalDeclared: declared.get(d.deviceId) ?? false,
      ...(d.decommissioned ? { decommissioned: d.decommissioned } : {}),
      coverage: d.coverage,
      inCoverage: d.inCoverage,
      status: d.status,
      consumedCount: d.consumed.length,
      ...(d.chain ? { chain: d.chain } : {}),
    })),
    lateKeys: r.lateKeys,
    decommissioned: r.decommissioned,
    totals: r.totals,
    baselineKg: r.baselineKg,
    rawNetGrams: r.rawNetGrams.toString(),
    ...(r.voids?.length ? { voids: r.voids } : {}),
    ...(r.correction ? { correction: r.correction } : {}),
  };
}
