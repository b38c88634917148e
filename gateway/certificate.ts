/**
 * Retirement certificates, rebuilt from the chain: the certificate (account, beneficiary, reason,
 * time, per batch the amount and serial range) from the ledger's `retirement(id)` view, and the
 * settlements whose minted serial ranges the retired ranges overlap (their evidence roots and
 * transactions, and where to verify them). As JSON for the API and as a printable HTML page in
 * which every field is escaped: beneficiary and reason are whatever the holder signed.
 */
import { createHash } from 'node:crypto';
import { gramsToTonnes } from '../domain/decimal.ts';
import { serialOf, vintagePrefix, type BatchView, type LedgerPort, type OnChainSettlement, type RetirementRecord } from '../contracts/client/port.ts';
import { vintageOf } from '../contracts/client/port.ts';
import { settlementId } from '../store/types.ts';
import { iso } from './format.ts';

export interface CertificateSettlementJson {
  facilityId: string;
  windowStart: string;
  windowEnd: string;
  mintedGrams: string;
  firstSerial: string;
  lastSerial: string;
  evidenceRoot: string;
  txHash: string;
  verifyUrl: string;
  bundleUrl: string;
}

export interface RetirementJson {
  id: string;
  account: string;
  facilityIds: string[];
  parts: { batchId: string; facilityId: string; vintage: string; amountGrams: string; firstSerial: string; lastSerial: string }[];
  amountGrams: string;
  amountTonnes: string;
  beneficiary: string;
  reason: string;
  retiredAt?: string;
  txHash?: string;
}

export interface CertificateJson extends RetirementJson {
  settlements: CertificateSettlementJson[];
}

/** A batch as the API shows it. */
export function batchJson(b: BatchView) {
  return {
    id: b.id,
    facilityId: b.facilityId,
    vintage: vintagePrefix(b.vintage),
    issuedGrams: b.issuedGrams.toString(),
    retiredGrams: b.retiredGrams.toString(),
    burnedGrams: b.burnedGrams.toString(),
    supplyGrams: b.supplyGrams.toString(),
    ownerBalanceGrams: b.ownerBalanceGrams.toString(),
    serialPrefix: `${b.facilityId}-${vintagePrefix(b.vintage)}-`,
  };
}

/** A retirement record as the API shows it. */
export function retirementJson(r: RetirementRecord): RetirementJson {
  return {
    id: r.id.toString(),
    account: r.account,
    facilityIds: r.facilityIds,
    parts: r.parts.map((p) => ({
      batchId: p.batchId,
      facilityId: p.facilityId,
      vintage: vintagePrefix(p.vintage),
      amountGrams: p.amountGrams.toString(),
      firstSerial: serialOf(p.facilityId, p.vintage, p.firstSerial),
      lastSerial: serialOf(p.facilityId, p.vintage, p.lastSerial),
    })),
    amountGrams: r.amountGrams.toString(),
    amountTonnes: gramsToTonnes(r.amountGrams),
    beneficiary: r.beneficiary,
    reason: r.reason,
    ...(r.retiredAt ? { retiredAt: iso(r.retiredAt) } : {}),
    ...(r.txHash ? { txHash: r.txHash } : {}),
  };
}

/**
 * The certificate of retirement `id` with the settlements that minted its serials, or undefined when
 * the ledger has no such retirement.
 */
export async function buildCertificate(ledger: Pick<LedgerPort, 'retirement' | 'settlements'>, id: bigint): Promise<CertificateJson | undefined> {
  const r = await ledger.retirement(id);
  if (!r) return undefined;
  const byFacility = new Map<string, OnChainSettlement[]>();
  for (const f of r.facilityIds) byFacility.set(f, await ledger.settlements({ facilityId: f }));
  const seen = new Set<string>();
  const settlements: CertificateSettlementJson[] = [];
  for (const p of r.parts) {
    for (const s of byFacility.get(p.facilityId) ?? []) {
      const minted = BigInt(s.mintedGrams);
      if (minted === 0n || vintageOf(s.windowStart) !== p.vintage) continue;
      const first = BigInt(s.firstSerial);
      const last = first + minted - 1n;
      if (last < p.firstSerial || first > p.lastSerial) continue;
      const sid = settlementId(p.facilityId, s.windowStart);
      if (seen.has(sid)) continue;
      seen.add(sid);
      const url = `/v1/settlements/${encodeURIComponent(sid)}`;
      settlements.push({
        facilityId: p.facilityId,
        windowStart: iso(s.windowStart),
        windowEnd: iso(s.windowEnd),
        mintedGrams: minted.toString(),
        firstSerial: serialOf(p.facilityId, p.vintage, first),
        lastSerial: serialOf(p.facilityId, p.vintage, last),
        evidenceRoot: s.evidenceRoot,
        txHash: s.txHash,
        verifyUrl: `${url}/verify`,
        bundleUrl: `${url}/bundle`,
      });
    }
  }
  return { ...retirementJson(r), settlements };
}

const STYLE = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #111; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
table { border-collapse: collapse; width: 100%; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #bbb; padding: 0.3rem 0.45rem; text-align: left; vertical-align: top; }
th { background: #f1f1f1; }
dt { font-weight: 600; } dd { margin: 0 0 0.4rem 0; overflow-wrap: anywhere; }
.num { text-align: right; } .mono, .serial { font-family: ui-monospace, monospace; font-size: 12px; overflow-wrap: anywhere; }
@media print { a { color: inherit; text-decoration: none; } }
`;

/**
 * The certificate page's Content-Security-Policy: nothing but its own inline style (by hash), no
 * script, no frames, links only.
 */
export const CERTIFICATE_CSP = `default-src 'none'; style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;

/** Text made safe for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`=/]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The printable certificate page (no script; every value escaped). */
export function certificateHtml(c: CertificateJson): string {
  const e = escapeHtml;
  const parts = c.parts
    .map(
      (p) =>
        `<tr><td>${e(p.facilityId)}</td><td>${e(p.vintage)}</td><td class="num">${e(p.amountGrams)}</td><td class="serial">${e(p.firstSerial)}</td><td class="serial">${e(p.lastSerial)}</td><td class="mono">${e(p.batchId)}</td></tr>`,
    )
    .join('\n');
  const settlements = c.settlements
    .map(
      (s) =>
        `<tr><td>${e(s.facilityId)}</td><td>${e(s.windowStart)} – ${e(s.windowEnd)}</td><td class="num">${e(s.mintedGrams)}</td><td class="serial">${e(s.firstSerial)} … ${e(s.lastSerial)}</td><td class="mono">${e(s.evidenceRoot)}</td><td class="mono">${e(s.txHash)}</td><td><a href="${e(s.verifyUrl)}">verify</a> · <a href="${e(s.bundleUrl)}">audit bundle</a></td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Retirement certificate #${e(c.id)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>Retirement certificate #<span id="certificate-id">${e(c.id)}</span></h1>
<p>Carbon credits retired on chain (1 credit = 1 g CO<sub>2</sub>e). Every value below is read from the ledger's events and views.</p>
<dl>
<dt>Beneficiary</dt><dd id="beneficiary">${e(c.beneficiary)}</dd>
<dt>Reason</dt><dd id="reason">${e(c.reason)}</dd>
<dt>Amount</dt><dd id="amount">${e(c.amountGrams)} g (${e(c.amountTonnes)} t CO<sub>2</sub>e)</dd>
<dt>Retired by</dt><dd class="mono" id="account">${e(c.account)}</dd>
<dt>Retired at</dt><dd id="retired-at">${e(c.retiredAt ?? 'unknown')}</dd>
<dt>Transaction</dt><dd class="mono" id="tx">${e(c.txHash ?? 'unknown')}</dd>
</dl>
<h2>Serial ranges</h2>
<table id="parts">
<thead><tr><th>Facility</th><th>Vintage</th><th>Grams</th><th>First serial</th><th>Last serial</th><th>Batch (token id)</th></tr></thead>
<tbody>
${parts}
</tbody>
</table>
<h2>Settlements that issued these serials</h2>
<table id="settlements">
<thead><tr><th>Facility</th><th>Window</th><th>Minted</th><th>Serials</th><th>Evidence root</th><th>Transaction</th><th>Check</th></tr></thead>
<tbody>
${settlements}
</tbody>
</table>
<p>Verify a settlement with the API (<code>GET …/verify</code> recomputes it from the stored readings), or offline with its audit bundle and <code>npm run audit</code>.</p>
</body>
</html>
`;
}
