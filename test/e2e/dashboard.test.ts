/**
 * The dashboard in real headless Chromium against a running stack with real data: the whole stack
 * on free ports, a simulated fleet for a few windows, then the page (key typed in as a user would)
 * must show, for every facility, the balances the API reads from the chain, and every settlement
 * verified. Saves test/.artifacts/dashboard-stack.png. Skips without chromium, fails under CI.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { chromium } from 'playwright-core';
import { startFleet } from '../../simulators/fleet.ts';
import { ADMIN_KEY, GRACE_SECONDS, WINDOW_SECONDS, api, runFleetFor, start, tempDataDir, waitSettledThrough } from './helpers.ts';
import { CHROMIUM, missing, skipUnless } from '../helpers/require.ts';

const ARTIFACTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '.artifacts');

t.test('the dashboard of a running stack shows the chain balances and verified settlements', { skip: skipUnless(missing.chromium()) }, async (t) => {
  const dataDir = tempDataDir(t);
  const stack = await start(t, dataDir);
  const fleet = await startFleet({
    url: stack.mqttUrl,
    devices: 6,
    rate: 3,
    seed: 'e2e-dashboard',
    api: { url: stack.httpUrl, key: ADMIN_KEY },
    windowSeconds: WINDOW_SECONDS,
    graceSeconds: GRACE_SECONDS,
    statePath: path.join(dataDir, 'sim-state.json'),
    progress: false,
  });
  t.teardown(() => fleet.stop());
  await runFleetFor(fleet, 4, 100);
  const summary = await fleet.stop();
  await waitSettledThrough(stack, summary.facilityIds, Date.now());

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1360, height: 1400 } });
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  await page.goto(`${stack.httpUrl}/`);
  await page.fill('#api-key', ADMIN_KEY);
  await page.click('#key-form button[type=submit]');
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 60_000 });

  const signs: bigint[] = [];
  for (const id of summary.facilityIds) {
    const bal = await api(stack, `/v1/facilities/${id}/balance`);
    const row = page.locator(`#facilities tr[data-facility-id="${id}"]`);
    for (const field of ['balanceGrams', 'mintedGrams', 'burnedGrams', 'deficitGrams']) {
      t.equal(await row.locator(`[data-field="${field}"]`).getAttribute('data-value'), bal[field], `${id} ${field} shown equals the API's (${bal[field]})`);
    }
    signs.push(BigInt(bal.mintedGrams) - BigInt(bal.burnedGrams) - BigInt(bal.deficitGrams));
  }
  t.ok(signs.some((s) => s > 0n) && signs.some((s) => s < 0n), 'one facility earns credits, one runs a deficit');

  // The selected facility's settlements, each verified against the chain by the page.
  await page.waitForFunction(() => !document.querySelector('#settlements [data-field="verify"] .pill.muted'), undefined, { timeout: 60_000 });
  const rows = await page.locator('#settlements tbody tr').count();
  t.ok(rows >= 3, `settlements listed (${rows})`);
  t.equal(await page.locator('#settlements [data-match="true"]').count(), rows, 'every settlement shown as verified');

  // The per-window figures of the selected facility (signed simulated devices): every window the page
  // shows as settled carries its settlement's net and still recomputes to it; the chart drew them all.
  const selected = await page.locator('#facility-select').inputValue();
  const { items: settlements } = await api(stack, `/v1/settlements?facilityId=${encodeURIComponent(selected)}&limit=1000`);
  const shown = await page.evaluate(() =>
    (Array.from(document.querySelectorAll('#windows tbody tr[data-window-start]')) as HTMLElement[]).map((tr) => ({
      windowStart: tr.dataset.windowStart,
      state: tr.querySelector<HTMLElement>('[data-field="state"]')?.dataset.value,
      netGrams: tr.querySelector<HTMLElement>('[data-field="netGrams"]')?.dataset.value,
    })),
  );
  const settledShown = shown.filter((w) => w.state === 'settled');
  t.ok(settledShown.length >= 3, `settled windows in the per-window figures (${settledShown.length})`);
  for (const w of settledShown) {
    const s = settlements.find((x: { windowStart: string }) => x.windowStart === w.windowStart);
    t.equal(w.netGrams, s?.netGrams, `window ${w.windowStart}: the settlement's net`);
  }
  const { items: figures } = await api(stack, `/v1/facilities/${encodeURIComponent(selected)}/windows`);
  t.ok(figures.filter((w: { settled: boolean }) => w.settled).every((w: { recomputedMatches?: boolean }) => w.recomputedMatches === true), 'every settled window recomputes to its record');
  const drawn = await page.evaluate(() => {
    const w = window as unknown as { Chart: { getChart(c: HTMLCanvasElement): { data: { labels: unknown[] } } | undefined } };
    return w.Chart.getChart(document.getElementById('emissions-chart') as HTMLCanvasElement)?.data.labels.length;
  });
  t.equal(drawn, shown.length, 'one bar group per window in the table');

  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const shot = path.join(ARTIFACTS, 'dashboard-stack.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.ok(fs.statSync(shot).size > 10_000, 'screenshot saved');
  t.same(problems, [], 'no page errors');
});
