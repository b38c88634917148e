/**
 * The dashboard in real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
 * a running gateway with data, the key typed into the page, the balances shown compared with the
 * API's, verification status and device signatures ("signed by N/N devices, chains unbroken") shown
 * per settlement with its audit bundle saved through the link, charts drawn, and a screenshot saved to
 * test/.artifacts/dashboard.png. Skips without chromium, except under CI where that is a failure.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { chromium } from 'playwright-core';
import type { Reading } from '../../domain/reading.ts';
import type { GatewaySettlements, SettlementRecord } from '../../gateway/deps.ts';
import type { SettlementAudit } from '../../oracle/audit.ts';
import { OWNER_A, startGateway } from './harness.ts';
import { CHROMIUM, missing, skipUnless } from '../helpers/require.ts';
import { fixture as auditFixture } from '../helpers/audit-fixture.ts';

const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '.artifacts');


t.test(
  'dashboard shows the API balances, settlements with verification, signatures and bundle, charts',
  { skip: skipUnless(missing.chromium()) },
  async (t) => {
    const W = 60_000;
    const T0 = Math.floor(Date.now() / W) * W - 30 * W;
    const h = await startGateway(t, { deps: { settlements: undefined } });

    // Readings in the real store (two meters with rising registers and a CEMS), settlements in a small oracle.
    const { openSqliteStores } = await import('../../store/sqlite/stores.ts');
    const { readings } = openSqliteStores(h.db);
    for (const d of ['grid-meter', 'gas-meter', 'cems']) h.registry.createDevice('facA', d, 'meter');
    const rows: Reading[] = [];
    for (let i = 0; i < 120; i++) {
      const ts = T0 + i * 15_000;
      const base = { facilityId: 'facA', seq: i, ts, reset: false, receivedAt: ts };
      rows.push({ ...base, deviceId: 'grid-meter', metric: 'electricity_import', value: (1000 + i * 1.7 + (i % 7) * 0.2).toFixed(2), unit: 'kWh' });
      rows.push({ ...base, deviceId: 'gas-meter', metric: 'natural_gas', value: (500 + i * 0.9).toFixed(2), unit: 'm3' });
      rows.push({ ...base, deviceId: 'cems', metric: 'co2_direct', value: (2 + Math.sin(i / 6)).toFixed(3), unit: 'kg' });
    }
    const outcomes = await readings.commit(rows);
    t.equal(outcomes.filter((o) => o.status === 'stored').length, rows.length, 'all readings stored');
    const nets = [5200n, -9000n, -1200n, 6100n, 0n, -2500n, 7000n, 6400n, 5100n, 2200n, 4300n, 3900n];
    // Amounts as the Ledger settles them: a negative net burns what the balance holds and adds the
    // rest to the deficit; a positive net pays the deficit down first and mints the rest.
    let balance = 0n;
    let deficit = 0n;
    const settlements: SettlementRecord[] = nets.map((n, i) => {
      let minted = 0n;
      let burned = 0n;
      if (n > 0n) {
        const paid = n < deficit ? n : deficit;
        deficit -= paid;
        minted = n - paid;
        balance += minted;
      } else if (n < 0n) {
        burned = -n < balance ? -n : balance;
        balance -= burned;
        deficit += -n - burned;
      }
      return {
        id: `facA:${T0 + i * W}`,
        facilityId: 'facA',
        windowStart: T0 + i * W,
        windowEnd: T0 + (i + 1) * W,
        complete: i !== 4, // an incomplete window never mints (net capped at 0)
        netGrams: n,
        mintedGrams: minted,
        burnedGrams: burned,
        deficitGrams: deficit,
        evidenceRoot: '0x' + (i + 16).toString(16).repeat(32).slice(0, 64),
        txHash: '0x' + 'ab'.repeat(32),
        // Window 0: two of three devices signed; window 2: the CEMS's hash chain broken; else all signed.
        // (With what the per-window figures read of a record: totals, factors, baseline, end cursors.)
        inputs: {
          devices: [
            { deviceId: 'cems', consumedCount: 4, endCursors: [], ...(i === 0 ? {} : { chain: { unbroken: i !== 2 } }) },
            { deviceId: 'gas-meter', consumedCount: 4, endCursors: [], chain: { unbroken: true } },
            { deviceId: 'grid-meter', consumedCount: 4, endCursors: [], chain: { unbroken: true } },
          ],
          totals: { electricity_import: '0', electricity_export: '0', renewable_generation: '0', natural_gas: '0', co2_direct: '0' },
          factors: { gridKgPerKwh: '0.5366', gasKgPerM3: '2.162' },
          baselineKg: '60',
        },
      };
    });
    const TAMPERED = settlements[9].id;
    const audit: SettlementAudit = {
      async verify(id) {
        const s = settlements.find((x) => x.id === id)!;
        const match = id !== TAMPERED;
        const netGrams = String(s.netGrams);
        return {
          match,
          onChain: { found: true, evidenceRoot: s.evidenceRoot, netGrams, txHash: s.txHash ?? null },
          recomputed: { evidenceRoot: match ? s.evidenceRoot : '0x' + '00'.repeat(32), netGrams, actualKg: '0', baselineKg: '0', complete: s.complete, factorsHash: '0x' + '00'.repeat(32), readings: 0 },
          recorded: { evidenceRoot: s.evidenceRoot, netGrams },
        };
      },
      async proof() {
        return undefined;
      },
      async bundle(id) {
        // The audit fixture's bundle stands in (test/gateway/bundle.test.ts fetches a real one).
        return { ...auditFixture().bundle, settlement: { ...auditFixture().bundle.settlement, id } };
      },
    };
    const records: GatewaySettlements = {
      listSettlements: (q) => settlements.filter((s) => !q.facilityId || s.facilityId === q.facilityId),
      getSettlement: (id) => settlements.find((s) => s.id === id),
      facilityStatus: (id) =>
        id === 'facB'
          ? { settlementStatus: 'blocked', reason: 'settlement of window 0 reverted: NetOutOfRange', since: Date.now(), attempts: 3, retryAt: Date.now() + 40_000 }
          : { settlementStatus: 'ok' },
    };
    const { buildGateway } = await import('../../gateway/app.ts');
    const { silentLogger } = await import('../../domain/logger.ts');
    // facA's credits in two vintages (the owner holds 40,123,456 g of them); facB with a deficit.
    h.ledger.setBatch('facA', 202610, { issued: 4_000_000n, burned: 3_700_000n, ownerBalance: 300_000n });
    const novA = h.ledger.setBatch('facA', 202611, { issued: 40_000_000n, retired: 176_544n, ownerBalance: 39_823_456n });
    h.ledger.setBatch('facB', 202611, { issued: 987_654_321n, ownerBalance: 987_654_321n, deficit: 12_000n });
    h.ledger.recordRetirement({
      id: 1n,
      account: OWNER_A,
      parts: [{ batchId: novA, facilityId: 'facA', vintage: 202611, amountGrams: 176_544n, firstSerial: 1n, lastSerial: 176_544n }],
      amountGrams: 176_544n,
      beneficiary: 'Municipal transit',
      reason: 'Q3 2026 scope 2 offset',
      retiredAt: T0 + 600_000,
    });

    const app = await buildGateway({ db: h.db, registry: h.registry, readings, settlements: records, audit, ledger: h.ledger, logger: silentLogger, options: { windowSeconds: 60 } });
    t.teardown(() => app.close());
    const url = await app.listen({ port: 0, host: '127.0.0.1' });

    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
    t.teardown(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1360, height: 1500 } });
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });

    await page.goto(url + '/');
    await page.fill('#api-key', h.key.regulator);
    await page.click('#key-form button[type=submit]');
    await page.waitForSelector('body[data-loaded="true"]', { timeout: 60_000 });
    t.equal(await page.evaluate(() => localStorage.getItem('mrv.apiKey')), h.key.regulator, 'key kept in localStorage');

    for (const id of ['facA', 'facB']) {
      const api = (await app.inject({ url: `/v1/facilities/${id}/balance`, headers: h.auth('regulator') })).json();
      const row = page.locator(`#facilities tr[data-facility-id="${id}"]`);
      for (const field of ['balanceGrams', 'balanceTonnes', 'mintedGrams', 'burnedGrams', 'retiredGrams', 'deficitGrams']) {
        const cell = row.locator(`[data-field="${field}"]`);
        t.equal(await cell.getAttribute('data-value'), api[field], `${id} ${field} value equals the API's`);
        t.equal((await cell.textContent())!.replaceAll(',', ''), api[field], `${id} ${field} shown equals the API's`);
      }
    }

    // A facility the chain refuses shows it, with the reason; the others do not.
    t.equal(await page.locator('#facilities tr[data-facility-id="facB"] [data-field="settlementStatus"]').getAttribute('data-value'), 'blocked');
    t.match(await page.locator('#facilities tr[data-facility-id="facB"] [data-field="settlementBlockedReason"]').textContent(), /NetOutOfRange/);
    t.equal(await page.locator('#facilities tr[data-facility-id="facA"] [data-field="settlementStatus"]').count(), 0);

    // Settlements with their verification status (the tampered one flagged).
    await page.waitForFunction(() => !document.querySelector('#settlements [data-field="verify"] .pill.muted'), undefined, { timeout: 60_000 });
    t.equal(await page.locator('#settlements tbody tr').count(), nets.length);
    t.equal(await page.locator(`#settlements tr[data-settlement-id="${TAMPERED}"] [data-field="verify"]`).getAttribute('data-match'), 'false');
    t.equal(await page.locator('#settlements [data-match="true"]').count(), nets.length - 1);
    t.match(await page.locator(`#settlements tr[data-settlement-id="${TAMPERED}"]`).textContent(), /MISMATCH/);
    // Deficit per window (+added / −paid down) beside the facility's deficit after the settlement.
    const deficitCells = async (i: number) => {
      const row = page.locator(`#settlements tr[data-settlement-id="facA:${T0 + i * W}"]`);
      return [await row.locator('[data-field="deficitChange"]').textContent(), await row.locator('[data-field="deficitAfterGrams"]').getAttribute('data-value')];
    };
    t.same(await deficitCells(0), ['0', '0'], 'a first positive window: no deficit');
    t.same(await deficitCells(1), ['+3,800', '3800'], '-9000 g with 5200 g held: 5200 burned, 3800 added');
    t.same(await deficitCells(2), ['+1,200', '5000'], 'nothing left to burn: all added');
    t.same(await deficitCells(3), ['−5,000', '0'], '+6100 g pays the 5000 g deficit down first');
    t.match(await page.locator('#settlements thead').textContent(), /Deficit change.*Deficit after/);
    // Device signatures per settlement, and its audit bundle (fetched with the key, saved as JSON).
    const sigText = async (i: number) => page.locator(`#settlements tr[data-settlement-id="facA:${T0 + i * W}"] [data-field="signatures"]`).textContent();
    t.equal(await sigText(1), 'signed by 3/3 devices, chains unbroken');
    t.equal(await sigText(0), 'signed by 2/3 devices, chains unbroken');
    t.equal(await sigText(2), 'signed by 3/3 devices, chain broken: cems');
    const link = page.locator(`#settlements tr[data-settlement-id="facA:${T0 + W}"] [data-field="bundle"]`);
    t.equal(await link.getAttribute('href'), `/v1/settlements/${encodeURIComponent(`facA:${T0 + W}`)}/bundle`);
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 60_000 }), link.click()]);
    const saved = JSON.parse(fs.readFileSync((await download.path())!, 'utf8'));
    t.match(saved, { format: 'mrv-audit-bundle-1', settlement: { id: `facA:${T0 + W}` } }, 'the bundle saved from the dashboard');
    t.match(await page.locator('#retirements tbody').textContent(), /Municipal transit/);
    t.match(await page.locator('#retirements tbody').textContent(), /facA-2026-11-1 … facA-2026-11-176544/, 'the serial range retired');
    t.equal(await page.locator('#retirements a.certificate').getAttribute('href'), '/v1/retirements/1', 'a link to the printable certificate');
    // The facility's batches: vintage, issued, retired, burned, held by the owner.
    const batchRows = await page.locator('#batches tbody tr').evaluateAll((trs) =>
      trs.map((tr) => Array.from(tr.querySelectorAll('[data-field]')).map((td) => (td as HTMLElement).dataset.value)),
    );
    t.same(batchRows, [
      ['2026-10', '4000000', '0', '3700000', '300000'],
      ['2026-11', '40000000', '176544', '0', '39823456'],
    ]);
    // Charts drew something (chart.js served from node_modules, allowed by the CSP). The facility was
    // registered now, after these records: its windows are the one in progress, or two when a window
    // boundary passed before the page loaded; the chart draws each window of the figures table (the
    // per-window charts are checked against the API in windows-browser.test.ts).
    const charts = await page.evaluate(() => {
      const w = window as unknown as { Chart: { getChart(c: HTMLCanvasElement): { data: { datasets: { data: unknown[] }[] } } | undefined } };
      return ['emissions-chart', 'credits-chart'].map((id) => w.Chart.getChart(document.getElementById(id) as HTMLCanvasElement)?.data.datasets.map((d) => d.data.length));
    });
    const windowRows = await page.locator('#windows tbody tr').count();
    t.ok(windowRows >= 1 && windowRows <= 2, `the window in progress (and the one before it if a boundary passed): ${windowRows}`);
    t.same(charts[0], Array(6).fill(windowRows), 'emissions chart: four sources, actual and baseline for each window of the table');
    t.same(charts[1], [nets.length, nets.length], 'credits chart: cumulative and per window');

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    t.ok(fs.statSync(shot).size > 10_000, `screenshot saved to ${path.relative(process.cwd(), shot)}`);
    t.same(problems, [], 'no page errors, no CSP violations');
  },
);

t.test('/docs (Swagger UI) loads without a console error under the gateway CSP', { skip: skipUnless(missing.chromium()) }, async (t) => {
  const h = await startGateway(t);
  const url = await h.app.listen({ port: 0, host: '127.0.0.1' });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const problems: string[] = [];
  const violations: string[] = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    if (m.text().startsWith('csp-violation')) violations.push(m.text());
  });
  // Violations are also reported as events: count them, whatever the console prints.
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => console.info(`csp-violation ${e.violatedDirective}`));
  });
  const res = await page.goto(url + '/docs/');
  const csp = res!.headers()['content-security-policy'];
  t.match(csp, /style-src 'self' 'sha256-[A-Za-z0-9+/=]+'(;|$)/, 'one hash more than the gateway policy, for the logo style');
  t.notMatch(csp, /unsafe-inline|https:|validator\.swagger\.io|upgrade-insecure/, 'nothing more');
  await page.waitForSelector('.swagger-ui .info .title', { timeout: 60_000 });
  await page.waitForSelector('.swagger-ui .opblock', { timeout: 60_000 });
  t.ok(await page.locator('.swagger-ui .opblock').count() > 10, 'the operations are listed');
  // The dashboard's own policy is unchanged: no hash there.
  const dash = await h.app.inject({ url: '/' });
  t.notMatch(dash.headers['content-security-policy'], /sha256-/, 'the hash is scoped to /docs');
  await page.goto(url + '/');
  await page.waitForSelector('#key-form', { timeout: 60_000 });
  t.same(problems, [], 'no console error on /docs nor /');
  t.same(violations, [], 'no CSP violation');
});
