/**
 * A retirement certificate in real headless Chromium: credits settled on the real CreditLedger
 * (Hardhat's in-process chain) into two vintages, a holder-signed EIP-712 retirement over both
 * batches relayed through the gateway (POST /v1/retirements), then the certificate page
 * (GET /v1/retirements/{id} as a browser asks for it) opened in Chromium. Its serial ranges are
 * compared with the chain's BatchRetired events and the certificate view; the beneficiary, which is
 * markup, shows as text. Skips without chromium, except under CI where that is a failure.
 */
import t from 'tap';
import { ethers } from 'ethers';
import { chromium } from 'playwright-core';
import { startHardhatChain } from '../../contracts/client/chain.ts';
import { Ledger } from '../../contracts/client/ledger.ts';
import { serialOf, vintageOf, vintagePrefix } from '../../contracts/client/port.ts';
import { buildGateway } from '../../gateway/app.ts';
import { signRetirement } from '../../gateway/cli/chain.ts';
import { silentLogger } from '../../domain/logger.ts';
import { startGateway } from './harness.ts';
import { CHROMIUM, missing, skipUnless } from '../helpers/require.ts';

t.test('a certificate page from a relayed retirement shows the serial ranges the chain recorded', { skip: skipUnless(missing.chromium()) }, async (t) => {
  const chain = await startHardhatChain();
  t.teardown(() => chain.close());
  const [admin, holderSigner] = chain.signers;
  const holderKey = chain.privateKeys[1];
  const holder = await holderSigner.getAddress();
  // Daily windows, the last two that have ended, in two UTC months when today is the 1st (else one).
  const W = 86_400_000;
  const today = Math.floor(Date.now() / W) * W;
  const ledger = await Ledger.deploy(admin, { windowSeconds: W / 1000 });
  await ledger.registerFacility('plant-7', holder, '3600', today - 2 * W);
  await ledger.settleBatch([
    { facilityId: 'plant-7', windowStart: today - 2 * W, windowEnd: today - W, netGrams: 40_000n, evidenceRoot: ethers.id('w0') },
    { facilityId: 'plant-7', windowStart: today - W, windowEnd: today, netGrams: 25_000n, evidenceRoot: ethers.id('w1') },
  ]);
  const batches = await ledger.batches('plant-7');
  t.equal(batches.length, vintageOf(today - 2 * W) === vintageOf(today - W) ? 1 : 2);

  const h = await startGateway(t, { deps: { ledger: undefined } });
  h.registry.createFacility({ id: 'plant-7', name: 'Plant 7', owner: holder, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162', createdAt: today - 2 * W });
  const app = await buildGateway({ db: h.db, registry: h.registry, ledger, logger: silentLogger });
  t.teardown(() => app.close());
  const url = await app.listen({ port: 0, host: '127.0.0.1' });

  // The holder signs (EIP-712, over batch ids and amounts) and the gateway relays: two parts, or two
  // entries of the one batch, so the certificate has two serial ranges either way.
  const ids = batches.length === 2 ? [BigInt(batches[0].id), BigInt(batches[1].id)] : [BigInt(batches[0].id), BigInt(batches[0].id)];
  const beneficiary = '<img src=x onerror=alert(1)> City & "Transit"';
  const signed = await signRetirement(new ethers.Wallet(holderKey, chain.provider), ledger.address, { batchIds: ids, amounts: [12_345n, 678n], beneficiary, reason: 'FY2026 scope 2' });
  const relayed = await fetch(`${url}/v1/retirements`, { method: 'POST', headers: { ...h.auth('regulator'), 'content-type': 'application/json' }, body: JSON.stringify(signed) });
  t.equal(relayed.status, 201);
  const { id, txHash } = (await relayed.json()) as { id: string; txHash: string };

  // What the chain recorded: one BatchRetired per part, in order.
  const receipt = await chain.provider.getTransactionReceipt(txHash);
  const onChain = receipt!.logs
    .filter((l) => ethers.getAddress(l.address) === ledger.address)
    .map((l) => ledger.contract.interface.parseLog(l))
    .filter((p) => p?.name === 'BatchRetired')
    .map((p) => {
      const batch = batches.find((b) => BigInt(b.id) === (p!.args.batchId as bigint))!;
      const first = p!.args.firstSerial as bigint;
      const amount = p!.args.amount as bigint;
      return [batch.facilityId, vintagePrefix(batch.vintage), amount.toString(), serialOf(batch.facilityId, batch.vintage, first), serialOf(batch.facilityId, batch.vintage, first + amount - 1n)];
    });
  t.equal(onChain.length, 2);

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('dialog', (d) => {
    problems.push(`dialog: ${d.message()}`);
    void d.dismiss();
  });
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  const res = await page.goto(`${url}/v1/retirements/${id}`);
  t.equal(res?.status(), 200);
  t.match(res?.headers()['content-type'], /^text\/html/);
  t.equal(await page.locator('#certificate-id').textContent(), id);
  const rows = await page.locator('#parts tbody tr').evaluateAll((trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td')).slice(0, 5).map((td) => td.textContent)));
  t.same(rows, onChain, "the page's serial ranges are the chain's");
  t.equal(await page.locator('#beneficiary').textContent(), beneficiary, 'the beneficiary shows as text');
  t.equal(await page.locator('#beneficiary img').count(), 0, 'no element made from it');
  t.equal(await page.locator('#tx').textContent(), txHash);
  // The settlements behind the serials, with their evidence roots and verify links.
  const settlementText = await page.locator('#settlements tbody').textContent();
  t.match(settlementText, ethers.id('w0'));
  t.equal(await page.locator('#settlements a', { hasText: 'verify' }).first().getAttribute('href'), `/v1/settlements/${encodeURIComponent(`plant-7-${today - 2 * W}`)}/verify`);
  t.same(problems, [], 'no script ran, no CSP violation, no page error');
});
