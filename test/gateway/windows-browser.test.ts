/**
 * The dashboard's per-window charts in real headless Chromium (Debian's /usr/bin/chromium driven by
 * playwright-core) over a running gateway with the real SQLite store and oracle (settlements made by
 * runOnce against the in-memory ledger): the emissions-by-source chart, its baseline line and the
 * consumption-per-device chart draw exactly the API's windows (chart.js's datasets against
 * GET /v1/facilities/{id}/windows), the tables under them show the API's exact decimal text, and a
 * device id carrying HTML is shown as text, never run. Screenshot: test/.artifacts/windows.png.
 * Skips without chromium, except under CI where that is a failure.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { chromium } from 'playwright-core';
import { silentLogger } from '../../domain/logger.ts';
import type { Metric, Reading } from '../../domain/reading.ts';
import { buildGateway } from '../../gateway/app.ts';
import { createKeyStore } from '../../gateway/keys.ts';
import { buildOracle } from '../../oracle/oracle.ts';
import { openDatabase } from '../../store/sqlite/db.ts';
import { openSqliteStores } from '../../store/sqlite/stores.ts';
import { facilityFixture } from '../helpers/fixtures.ts';
import { MemoryLedger } from '../helpers/memory-ledger.ts';
import { CHROMIUM, missing, skipUnless } from '../helpers/require.ts';
import { tmpDir } from '../helpers/tmp.ts';

const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '.artifacts');
const W = 10_000;
const T0 = Date.UTC(2026, 10, 22, 6, 0, 0);
/** A device id a store let through: markup that would run if inserted as HTML. */
const HOSTILE = '<img src=x onerror="window.__pwned=1">';
const UNIT: Record<Metric, string> = { electricity_import: 'kWh', electricity_export: 'kWh', renewable_generation: 'kWh', natural_gas: 'm3', co2_direct: 'kg' };

const rd = (deviceId: string, seq: number, ts: number, metric: Metric, value: string): Reading => ({
  facilityId: 'F', deviceId, seq, ts, metric, value, unit: UNIT[metric], reset: false, receivedAt: ts,
});

interface ApiWindow {
  windowStart: string;
  settled: boolean;
  emissionsKg: Record<'gridImport' | 'gas' | 'direct' | 'exportCredit', string>;
  actualKg: string;
  baselineKg: string;
  netGrams: string;
  devices: { deviceId: string; totals: Record<Metric, string> }[];
}

t.test('the per-window charts draw the API\'s windows; a hostile device id is text', { skip: skipUnless(missing.chromium()) }, async (t) => {
  const db = openDatabase(tmpDir(t, 'mrv-windows-ui-'));
  t.teardown(() => db.close());
  const { readings, registry } = openSqliteStores(db, { clock: () => T0 });
  const ledger = new MemoryLedger();
  registry.createFacility(facilityFixture('F', { name: 'Plant F', createdAt: T0 }));
  registry.createDevice('F', 'm1', 'meter');
  registry.createDevice('F', 'g1', 'meter');
  // The registry refuses such an id (ID_RE); a row written past it stands for any store that did not.
  db.prepare("INSERT INTO devices (device_id, facility_id, kind, status, created_at, secret_hash) VALUES (?, 'F', 'meter', 'active', ?, 'x')").run(HOSTILE, T0);
  const rows: Reading[] = [];
  for (let i = 0; i < 6; i++) {
    const ts = T0 + i * W + 5_000;
    rows.push(rd('m1', 2 * i + 1, ts, 'electricity_import', String(1000 + i * 4.5 + (i % 2) * 0.25)));
    rows.push(rd('m1', 2 * i + 2, ts + 1, 'electricity_export', String(20 + i * 0.5)));
    rows.push(rd('g1', i + 1, ts, 'natural_gas', String(300 + i * 1.25)));
    rows.push(rd(HOSTILE, i + 1, ts, 'co2_direct', i % 2 ? '0.5' : '0.75'));
  }
  const stored = await readings.commit(rows);
  t.same(new Set(stored.map((o) => o.status)), new Set(['stored']));
  const oracle = buildOracle({ db, readings, registry, ledger, logger: silentLogger, windowMs: W, graceMs: 2_000, lease: false });
  t.teardown(() => oracle.close());
  t.equal((await oracle.runOnce(T0 + 42_000)).errors.length, 0);
  t.equal(oracle.listSettlements({ facilityId: 'F' }).length, 4, 'windows 0..3 settled; 4 closed, 5 in progress');

  const app = await buildGateway({ db, registry, readings, ledger, settlements: oracle, audit: oracle, logger: silentLogger, now: () => T0 + 55_000, options: { windowSeconds: W / 1000, chainCacheMs: 0 } });
  t.teardown(() => app.close());
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const key = createKeyStore(db).create('regulator').key;
  const api = (await app.inject({ url: '/v1/facilities/F/windows', headers: { authorization: `Bearer ${key}` } })).json() as { items: ApiWindow[] };
  t.equal(api.items.length, 6, 'the API answers windows 0..5');
  t.same(api.items.map((w) => w.settled), [true, true, true, true, false, false]);

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1360, height: 1400 } });
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  await page.goto(url + '/');
  await page.fill('#api-key', key);
  await page.click('#key-form button[type=submit]');
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 60_000 });
  await page.waitForFunction((n) => document.querySelectorAll('#windows tbody tr[data-window-start]').length === n, api.items.length, { timeout: 60_000 });

  // The table: the API's exact text, cell by cell.
  const table = await page.evaluate(() =>
    (Array.from(document.querySelectorAll('#windows tbody tr')) as HTMLTableRowElement[]).map((tr) => ({
      windowStart: tr.dataset.windowStart,
      ...Object.fromEntries((Array.from(tr.querySelectorAll('[data-field]')) as HTMLElement[]).map((c) => [c.dataset.field, c.dataset.value])),
      text: Object.fromEntries((Array.from(tr.querySelectorAll('td.num')) as HTMLElement[]).map((c) => [c.dataset.field, c.textContent])),
    })),
  );
  t.equal(table.length, api.items.length);
  for (const w of api.items) {
    const row = table.find((r) => r.windowStart === w.windowStart)!;
    t.ok(row, `a row for ${w.windowStart}`);
    const want = { ...w.emissionsKg, actualKg: w.actualKg, baselineKg: w.baselineKg, netGrams: w.netGrams };
    t.match(row, want, `${w.windowStart}: values equal the API's`);
    t.same(row.text, want, `${w.windowStart}: shown as the API's exact text`);
    t.equal(row.state, w.settled ? 'settled' : w.windowStart === api.items.at(-1)!.windowStart ? 'in progress' : 'not settled yet');
  }

  // The charts: what chart.js holds is the API's figures (numbers for drawing only).
  const charts = await page.evaluate(() => {
    type C = { data: { labels: string[]; datasets: { label: string; data: (number | null)[]; stack?: string }[] } };
    const w = window as unknown as { Chart: { getChart(c: HTMLCanvasElement): C | undefined } };
    const read = (id: string) => w.Chart.getChart(document.getElementById(id) as HTMLCanvasElement)?.data;
    return { emissions: read('emissions-chart'), consumption: read('consumption-chart') };
  });
  const n = (s: string) => Number(s);
  const emissions = Object.fromEntries(charts.emissions!.datasets.map((d) => [d.label, d.data]));
  t.equal(charts.emissions!.labels.length, api.items.length, 'one bar group per window');
  t.same(emissions['grid import (kg)'], api.items.map((w) => n(w.emissionsKg.gridImport)));
  t.same(emissions['natural gas (kg)'], api.items.map((w) => n(w.emissionsKg.gas)));
  t.same(emissions['direct CO₂ (kg)'], api.items.map((w) => n(w.emissionsKg.direct)));
  t.same(emissions['export credit (−) (kg)'], api.items.map((w) => -n(w.emissionsKg.exportCredit)), 'the export credit below zero');
  t.same(emissions['actual (kg)'], api.items.map((w) => n(w.actualKg)));
  t.same(emissions['baseline (kg)'], api.items.map((w) => n(w.baselineKg)), 'the baseline line');
  t.same(
    charts.emissions!.datasets.filter((d) => d.stack === 'sources').map((d) => d.label),
    ['grid import (kg)', 'natural gas (kg)', 'direct CO₂ (kg)', 'export credit (−) (kg)'],
    'the sources stacked; actual and baseline apart',
  );
  const consumption = Object.fromEntries(charts.consumption!.datasets.map((d) => [d.label, d.data]));
  const perDevice = (deviceId: string, metric: Metric) => api.items.map((w) => n(w.devices.find((d) => d.deviceId === deviceId)!.totals[metric]));
  t.same(Object.keys(consumption).sort(), [`${HOSTILE} · direct CO₂ (kg)`, 'g1 · gas (m³)', 'm1 · export (kWh)', 'm1 · import (kWh)'].sort(), 'one series per device and metric that moved');
  t.same(consumption['m1 · import (kWh)'], perDevice('m1', 'electricity_import'));
  t.same(consumption['m1 · export (kWh)'], perDevice('m1', 'electricity_export'));
  t.same(consumption['g1 · gas (m³)'], perDevice('g1', 'natural_gas'));
  t.same(consumption[`${HOSTILE} · direct CO₂ (kg)`], perDevice(HOSTILE, 'co2_direct'));

  // The hostile id: text in the consumption table, no element made of it, nothing ran.
  const hostile = await page.evaluate(() => ({
    cells: Array.from(document.querySelectorAll('#consumption [data-field="deviceId"]')).map((c) => c.textContent),
    images: document.querySelectorAll('img').length,
    pwned: (window as unknown as { __pwned?: number }).__pwned ?? null,
  }));
  t.equal(hostile.cells.filter((c) => c === HOSTILE).length, api.items.length, 'shown as text, once per window');
  t.equal(hostile.images, 0, 'no element made of it');
  t.equal(hostile.pwned, null, 'nothing ran');
  t.match(await page.locator('#windows-note').textContent(), /6 windows: 4 settled, 2 provisional/);

  await page.locator('#windows-figures summary').click();
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const shot = path.join(ARTIFACTS, 'windows.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.ok(fs.statSync(shot).size > 10_000, `screenshot saved to ${path.relative(process.cwd(), shot)}`);
  t.same(problems, [], 'no page errors, no CSP violations');
});
