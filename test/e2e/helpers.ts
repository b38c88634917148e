/** Shared pieces of the end-to-end tests: a stack on free ports, HTTP helpers, bounded waiting. */
import type { Test } from 'tap';
import { loadConfig, type Config } from '../../domain/config.ts';
import { silentLogger } from '../../domain/logger.ts';
import { windowOf } from '../../domain/window.ts';
import { startStack, type Stack } from '../../main.ts';
import type { Fleet } from '../../simulators/fleet.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import type { Reading } from '../../domain/reading.ts';
import type { FacilityRegistry, OracleRecords, ReadingStore, RecordedInputs } from '../../store/types.ts';
import { recompute, type CheckSettlement } from './checker.ts';
import { eventually } from '../helpers/eventually.ts';
import { tmpDir } from '../helpers/tmp.ts';

export const ADMIN_KEY = 'e2e-admin-key-0123456789abcdef';
export const WINDOW_SECONDS = 2;
export const GRACE_SECONDS = 1;

/** A stack's DATA_DIR, removed when the test ends. */
export function tempDataDir(t: Test): string {
  return tmpDir(t, 'mrv-e2e-');
}

export function e2eConfig(dataDir: string, overrides: Parameters<typeof loadConfig>[1] = {}): Config {
  return loadConfig({}, {
    dataDir,
    httpPort: 0,
    mqttPort: 0,
    anvilPort: 0,
    windowSeconds: WINDOW_SECONDS,
    graceSeconds: GRACE_SECONDS,
    oracleCron: '* * * * * *',
    simulatedDevices: 0,
    adminApiKey: ADMIN_KEY,
    logLevel: 'silent',
    ...overrides,
  });
}

export async function start(t: Test, dataDir: string): Promise<Stack> {
  const stack = await startStack(e2eConfig(dataDir), { logger: silentLogger });
  const close = stack.close;
  let closed: Promise<void> | undefined;
  stack.close = () => (closed ??= close());
  t.teardown(() => stack.close());
  return stack;
}

export async function api<T = any>(stack: Stack, route: string): Promise<T> {
  const res = await fetch(`${stack.httpUrl}${route}`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } });
  const text = await res.text();
  if (!res.ok) throw new Error(`GET ${route}: ${res.status} ${text.slice(0, 300)}`);
  return (route === '/metrics' ? text : JSON.parse(text)) as T;
}

/** @deprecated a pause, not a wait: wait on a condition with `eventually` (test/helpers/eventually.ts) / `runFleetFor` / `windowsPass` instead. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


/**
 * Lets a running fleet publish until both conditions hold: `windows` settlement windows have closed
 * since the call (wall-clock boundaries: the windows themselves are what the test needs), and the
 * platform has acknowledged at least `minReadings` readings (whatever the machine's speed).
 */
export async function runFleetFor(fleet: Fleet, windows: number, minReadings: number): Promise<void> {
  const w = WINDOW_SECONDS * 1000;
  const until_ = windowOf(Date.now(), w).end + (windows - 1) * w;
  await eventually(`${windows} windows and ${minReadings} acknowledged readings`, () => Date.now() >= until_ && fleet.stats().readingsAcked >= minReadings, {
    timeoutMs: windows * w + 120_000,
    everyMs: 100,
  });
}

/** Waits until `windows` window boundaries have passed (the stack down, for instance). */
export async function windowsPass(windows: number): Promise<void> {
  const w = WINDOW_SECONDS * 1000;
  const until_ = windowOf(Date.now(), w).end + (windows - 1) * w;
  await eventually(`${windows} windows to pass`, () => Date.now() >= until_, { timeoutMs: windows * w + 60_000, everyMs: 100 });
}

/** A settlement as GET /v1/settlements lists it. */
export interface ApiSettlement {
  id: string;
  facilityId: string;
  windowStart: string;
  windowEnd: string;
  netGrams: string;
  complete: boolean;
  mintedGrams: string;
  burnedGrams: string;
  deficitGrams: string;
}

/** Waits until every facility's settlements reach the window after `lastTs` (plus one more). */
export async function waitSettledThrough(stack: Stack, facilityIds: string[], lastTs: number): Promise<void> {
  const needEnd = windowOf(lastTs, WINDOW_SECONDS * 1000).end + WINDOW_SECONDS * 1000;
  await eventually('settlements to catch up', async () => {
    for (const f of facilityIds) {
      const { items } = await api<{ items: ApiSettlement[] }>(stack, `/v1/settlements?facilityId=${f}&limit=1000`);
      if (!items.some((s) => Date.parse(s.windowEnd) >= needEnd)) return false;
    }
    return true;
  }, { timeoutMs: 120_000, everyMs: 250 });
}

/**
 * Checks everything the end-to-end issue asks of a facility's settlements; returns their count.
 * Reads the stored readings and the oracle's recorded visibility marks straight from the SQLite
 * file (a second connection), and the chain through the gateway and the ledger client.
 */
export async function checkFacility(t: Test, stack: Stack, facilityId: string): Promise<{ settlements: number; netSum: bigint }> {
  const { items } = await api<{ items: ApiSettlement[] }>(stack, `/v1/settlements?facilityId=${facilityId}&limit=1000`);
  const list = [...items].sort((a, b) => Date.parse(a.windowStart) - Date.parse(b.windowStart));
  t.ok(list.length >= 3, `${facilityId}: settled several windows (${list.length})`);
  const facility = await api(stack, `/v1/facilities/${facilityId}`);
  t.equal(Date.parse(list[0].windowStart), windowOf(Date.parse(facility.createdAt), WINDOW_SECONDS * 1000).start, `${facilityId}: first settlement is the registration window`);
  let gaps = 0;
  for (let i = 1; i < list.length; i++) if (list[i].windowStart !== list[i - 1].windowEnd) gaps++;
  t.equal(gaps, 0, `${facilityId}: settlements are contiguous`);

  // Exactly once on chain: one WindowSettled event per window.
  // Up to the last listed window: the running oracle may settle the next one between the two reads.
  const lastListed = list.length > 0 ? Date.parse(list[list.length - 1].windowStart) : Infinity;
  const onChain = (await stack.ledgers.oracle.settlements({ facilityId })).filter((s) => s.windowStart <= lastListed);
  const perWindow = new Map<number, number>();
  for (const s of onChain) perWindow.set(s.windowStart, (perWindow.get(s.windowStart) ?? 0) + 1);
  t.equal([...perWindow.values()].filter((n) => n !== 1).length, 0, `${facilityId}: every window settled exactly once on chain`);
  t.equal(perWindow.size, list.length, `${facilityId}: chain and records agree on the number of settlements`);

  // Every settlement verifies (recomputed from the store, compared with the chain).
  let mismatches = 0;
  for (const s of list) {
    const v = await api(stack, `/v1/settlements/${s.id}/verify`);
    if (!v.match) mismatches++;
  }
  t.equal(mismatches, 0, `${facilityId}: every settlement verifies`);

  // Independent recomputation from the stored readings.
  const db = openDatabase(stack.config.dataDir);
  try {
    const { readings, registry, records } = openSqliteStores(db);
    await checkAgainstRecomputation(t, { readings, registry, records }, facilityId, list);
    const netSum = list.reduce((a, s) => a + BigInt(s.netGrams), 0n);

    // The chain's totals are consistent with the methodology's sum of nets.
    const bal = await api(stack, `/v1/facilities/${facilityId}/balance`);
    t.equal(BigInt(bal.mintedGrams) - BigInt(bal.burnedGrams) - BigInt(bal.deficitGrams), netSum, `${facilityId}: minted - burned - deficit = sum of nets`);
    t.equal(BigInt(bal.balanceGrams) + BigInt(bal.retiredGrams) - BigInt(bal.deficitGrams), netSum, `${facilityId}: balance + retired - deficit = sum of nets`);
    return { settlements: list.length, netSum };
  } finally {
    db.close();
  }
}

/** The stores the independent recomputation reads: any backend (SQLite file, PostgreSQL). */
export interface RecomputeSources {
  readings: ReadingStore;
  registry: FacilityRegistry;
  records: Pick<OracleRecords, 'listSettlements'>;
}

/**
 * Every listed settlement's net and completeness equal the independent recomputation (checker.ts,
 * written from the methodology's words) over the readings stored, seen through the marks each
 * settlement recorded; some windows were complete.
 */
export async function checkAgainstRecomputation(
  t: Test,
  src: RecomputeSources,
  facilityId: string,
  list: { id: string; windowStart: string; windowEnd: string; netGrams: string; complete: boolean }[],
): Promise<void> {
  const { readings, registry } = src;
  const devices = registry.listDevices(facilityId).map((d) => d.deviceId);
  const all: Reading[] = [];
  for (const d of devices) {
    const mark = (await readings.marks([d])).get(d);
    if (mark !== undefined) all.push(...(await readings.consume({ deviceId: d, mark, before: Number.MAX_SAFE_INTEGER })));
  }
  const recorded = await src.records.listSettlements({ facilityId, limit: 1000 });
  const inputsById = new Map(recorded.map((r) => [r.id, r.inputs as Pick<RecordedInputs, 'devices' | 'baselineKgPerHour'>]));
  const f = registry.getFacility(facilityId)!;
  const checks: CheckSettlement[] = list.map((s) => {
    const inputs = inputsById.get(s.id)!;
    return {
      id: s.id,
      windowStart: Date.parse(s.windowStart),
      windowEnd: Date.parse(s.windowEnd),
      netGrams: s.netGrams,
      complete: s.complete,
      devices: new Map(
        inputs.devices.map((d) => [
          d.deviceId,
          {
            ...(d.mark ? { mark: d.mark } : {}),
            reportingIntervalSeconds: d.reportingIntervalSeconds,
            interval: d.intervalDeclared || d.coverage.interval || all.some((r) => r.deviceId === d.deviceId && r.metric === 'co2_direct'),
            inCoverage: !(d.decommissioned && Date.parse(s.windowStart) >= d.decommissioned.at),
          },
        ]),
      ),
      baselineKgPerHour: registry.baselineAt(facilityId, Date.parse(s.windowStart)),
    };
  });
  const expected = recompute(checks, all, { grid: f.gridFactorKgPerKwh, gas: f.gasFactorKgPerM3 });
  const wrong = expected.filter((e, i) => e.netGrams.toString() !== list[i].netGrams || e.complete !== list[i].complete);
  t.same(wrong.map((w) => `${w.id}: expected ${w.netGrams} complete=${w.complete}`), [], `${facilityId}: every net equals the independent recomputation`);
  t.ok(expected.some((e) => e.complete), `${facilityId}: some windows were complete`);
}
