/**
 * The audit of one settlement from its bundle alone (docs/METHODOLOGY.md "Audit bundle"): every
 * signature against the device's keys, every stored value against the value it signed, each signed
 * device's hash chain, the factor set's hash, then the net and the evidence root recomputed with the
 * platform's own methodology and evidence code (imported, not copied) and compared with the
 * settlement record; then, given a chain view, with the chain's settlement and the keys the ledger
 * recorded. No database, no gateway: the bundle and the chain are the only inputs.
 */
import { Decimal } from '../domain/decimal.ts';
import { MAX_FUTURE_MS, METRICS, isMetric } from '../domain/reading.ts';
import { checkChain, normalisePublicKey, readingLine, verifyLine, type ChainReading } from '../domain/signature.ts';
import { canonicalHash } from '../oracle/canonical.ts';
import { buildEvidence } from '../oracle/evidence.ts';
import { SUPPORTED_VERSIONS, settleWindow } from '../oracle/methodology.ts';
import { toReading, windowInputOf, type AuditBundle, type BundleDevice, type BundleReading } from './bundle.ts';

export type FindingReason =
  /** A signature that does not verify under any key of the device. */
  | 'bad_signature'
  /** A reading of a signed device, received after its key was set, with no signature. */
  | 'unsigned'
  /** The stored (normalised) value or unit is not what the device signed. */
  | 'value_mismatch'
  /** A signed device's hash chain is broken over the readings used (an omitted or inserted reading). */
  | 'chain_broken'
  /** A key in the bundle that is not a 32-byte Ed25519 key. */
  | 'bad_key'
  /** The factor set's hash does not match its values. */
  | 'factors_hash'
  /** A methodology version this auditor cannot recompute. */
  | 'methodology_version'
  /** Recomputed net or root differs from the settlement record in the bundle. */
  | 'record_mismatch'
  /** The chain has no settlement for the window, or a different one (net, root, window end). */
  | 'chain_mismatch'
  /** The bundle's device keys differ from those recorded on chain. */
  | 'key_not_on_chain'
  /** The ledger recorded a key for a device the bundle presents as unsigned (its signatures withheld). */
  | 'key_missing'
  /** The bundle's data cannot be recomputed (e.g. a reading not due in the window). */
  | 'invalid_bundle';

export interface Finding {
  reason: FindingReason;
  deviceId?: string;
  seq?: number;
  detail: string;
}

export interface DeviceSummary {
  deviceId: string;
  signed: boolean;
  readings: number;
  signatures: number;
  chainUnbroken?: boolean;
  /** Seqs where the device started a new chain (prev ''): its first signed reading, or a new key. */
  chainStarts?: number[];
}

export interface AuditReport {
  ok: boolean;
  facilityId: string;
  window: { start: number; end: number };
  settlementId: string;
  recomputed?: { netGrams: string; evidenceRoot: string; complete: boolean };
  record: { netGrams: string; evidenceRoot: string };
  chain?: { checked: boolean; netGrams?: string; evidenceRoot?: string; txHash?: string; keysOnChain?: boolean; note?: string };
  devices: DeviceSummary[];
  findings: Finding[];
}

/** The settlement and device keys as the chain holds them: one small seam (audit/chain.ts implements it). */
export interface ChainView {
  settlement(facilityId: string, windowStart: number): Promise<{ windowEnd: number; netGrams: bigint; evidenceRoot: string; txHash?: string } | undefined>;
  /**
   * The device's keys recorded on chain (64 hex each, any order), or undefined when this ledger
   * records no keys.
   */
  deviceKeys(facilityId: string, deviceId: string): Promise<string[] | undefined>;
}

/** The value (normalised) a signed reading's sent value and unit stand for; undefined when they do not parse. */
function normalisedSent(metric: string, r: BundleReading): string | undefined {
  if (!isMetric(metric)) return undefined;
  const units: Record<string, number> = METRICS[metric].units;
  const unit = r.sentUnit ?? r.unit;
  if (!Object.prototype.hasOwnProperty.call(units, unit)) return undefined;
  try {
    return Decimal.parse(r.sentValue ?? r.value).shift(units[unit]).toString();
  } catch {
    return undefined;
  }
}

function auditDevice(b: AuditBundle, d: BundleDevice, findings: Finding[]): DeviceSummary {
  const keys: string[] = [];
  for (const k of d.keys) {
    const hex = normalisePublicKey(k.publicKey);
    if (hex) keys.push(hex);
    else findings.push({ reason: 'bad_key', deviceId: d.deviceId, detail: `key ${JSON.stringify(k.publicKey).slice(0, 80)} is not a 32-byte Ed25519 key` });
  }
  const signedSince = d.keys.length > 0 ? Math.min(...d.keys.map((k) => k.setAt)) : undefined;
  const summary: DeviceSummary = { deviceId: d.deviceId, signed: d.keys.length > 0, readings: d.readings.length, signatures: 0 };
  const chained = (list: BundleReading[]): ChainReading[] => {
    const out: ChainReading[] = [];
    for (const r of list) {
      if (r.sig === undefined) continue;
      out.push({ seq: r.seq, line: readingLine(toReading(b.facility.id, d.deviceId, r)) as string, prev: r.prev ?? '' });
    }
    return out;
  };
  for (const [list, used] of [[d.readings, true], [d.context, false]] as const) {
    for (const r of list) {
      if (r.sig === undefined) {
        // ts is at most 5 minutes ahead of receipt: a ts past setAt + 5 min was received after the key was set.
        if (used && signedSince !== undefined && r.ts >= signedSince + MAX_FUTURE_MS) {
          findings.push({ reason: 'unsigned', deviceId: d.deviceId, seq: r.seq, detail: `reading ${r.seq} has no signature although the device has had a key since ${new Date(signedSince).toISOString()}` });
        }
        continue;
      }
      if (used) summary.signatures++;
      const line = readingLine(toReading(b.facility.id, d.deviceId, r)) as string;
      if (!keys.some((k) => verifyLine(k, line, r.sig as string))) {
        findings.push({ reason: 'bad_signature', deviceId: d.deviceId, seq: r.seq, detail: `signature of reading ${r.seq}${used ? '' : ' (chain context)'} does not verify under the device's key${keys.length === 1 ? '' : 's'} (line ${JSON.stringify(line)})` });
      }
      const sent = normalisedSent(r.metric, r);
      if (sent === undefined || sent !== r.value || (METRICS[r.metric] as { unit: string }).unit !== r.unit) {
        findings.push({ reason: 'value_mismatch', deviceId: d.deviceId, seq: r.seq, detail: `reading ${r.seq} is stored as ${r.value} ${r.unit}, the device signed ${r.sentValue ?? r.value} ${r.sentUnit ?? r.unit}` });
      }
    }
  }
  if (summary.signed) {
    const check = checkChain(chained(d.readings), chained(d.context));
    summary.chainUnbroken = check.unbroken;
    if (check.starts.length > 0) summary.chainStarts = check.starts;
    for (const br of check.breaks) {
      const why = br.reason === 'prev_missing' ? "its prev names no reading in the bundle (one before it was omitted or changed)" : br.reason === 'prev_not_previous' ? 'its prev names an earlier reading than the one just below it (a reading was inserted)' : 'two different readings carry this seq';
      findings.push({ reason: 'chain_broken', deviceId: d.deviceId, seq: br.seq, detail: `hash chain broken at seq ${br.seq}: ${why}` });
    }
  }
  return summary;
}

/** Everything that needs only the bundle. */
export function auditOffline(b: AuditBundle): AuditReport {
  const findings: Finding[] = [];
  const report: AuditReport = {
    ok: false,
    facilityId: b.facility.id,
    window: { ...b.window },
    settlementId: b.settlement.id,
    record: { netGrams: b.settlement.netGrams, evidenceRoot: b.settlement.evidenceRoot },
    devices: [],
    findings,
  };
  for (const d of b.devices) report.devices.push(auditDevice(b, d, findings));
  const { hash, ...factorBody } = b.factors;
  const wantHash = canonicalHash(factorBody);
  if (wantHash !== hash.toLowerCase()) findings.push({ reason: 'factors_hash', detail: `factor set hash ${hash} does not match its values (${wantHash})` });
  if (!SUPPORTED_VERSIONS.includes(b.methodologyVersion)) {
    findings.push({ reason: 'methodology_version', detail: `bundle uses ${b.methodologyVersion}; this auditor recomputes ${SUPPORTED_VERSIONS.join(', ')}` });
  } else {
    try {
      const result = settleWindow(windowInputOf(b));
      const evidence = buildEvidence(result);
      report.recomputed = { netGrams: result.netGrams.toString(), evidenceRoot: evidence.root, complete: result.complete };
      if (report.recomputed.complete !== b.settlement.complete) {
        findings.push({ reason: 'record_mismatch', detail: `recomputed the window as ${result.complete ? 'complete' : 'incomplete'}, the settlement record says ${b.settlement.complete ? 'complete' : 'incomplete'}` });
      }
      if (report.recomputed.netGrams !== b.settlement.netGrams) {
        findings.push({ reason: 'record_mismatch', detail: `recomputed net ${report.recomputed.netGrams} g, the settlement record says ${b.settlement.netGrams} g` });
      }
      if (evidence.root.toLowerCase() !== b.settlement.evidenceRoot.toLowerCase()) {
        findings.push({ reason: 'record_mismatch', detail: `recomputed evidence root ${evidence.root}, the settlement record says ${b.settlement.evidenceRoot}` });
      }
    } catch (err) {
      findings.push({ reason: 'invalid_bundle', detail: `cannot recompute: ${(err as Error).message}` });
    }
  }
  report.ok = findings.length === 0;
  return report;
}

/** The offline audit, then the chain: its settlement of the window and the device keys it recorded. */
export async function auditBundle(b: AuditBundle, chain?: ChainView): Promise<AuditReport> {
  const report = auditOffline(b);
  if (!chain) {
    report.chain = { checked: false, note: 'chain not checked (offline audit)' };
    report.ok = false;
    return report;
  }
  const findings = report.findings;
  const onChain = await chain.settlement(b.facility.id, b.window.start);
  report.chain = { checked: true };
  if (!onChain) {
    findings.push({ reason: 'chain_mismatch', detail: `the ledger has no settlement of ${b.facility.id} for the window starting ${new Date(b.window.start).toISOString()}` });
  } else {
    report.chain.netGrams = onChain.netGrams.toString();
    report.chain.evidenceRoot = onChain.evidenceRoot;
    if (onChain.txHash) report.chain.txHash = onChain.txHash;
    const root = report.recomputed?.evidenceRoot ?? b.settlement.evidenceRoot;
    const net = report.recomputed?.netGrams ?? b.settlement.netGrams;
    if (onChain.evidenceRoot.toLowerCase() !== root.toLowerCase()) findings.push({ reason: 'chain_mismatch', detail: `the chain's evidence root is ${onChain.evidenceRoot}, recomputed ${root}` });
    if (onChain.netGrams.toString() !== net) findings.push({ reason: 'chain_mismatch', detail: `the chain's net is ${onChain.netGrams} g, recomputed ${net} g` });
    if (onChain.windowEnd !== b.window.end) findings.push({ reason: 'chain_mismatch', detail: `the chain's window ends ${new Date(onChain.windowEnd).toISOString()}, the bundle's ${new Date(b.window.end).toISOString()}` });
  }
  let keysKnown = true;
  for (const d of b.devices) {
    const recorded = await chain.deviceKeys(b.facility.id, d.deviceId);
    if (recorded === undefined) {
      keysKnown = false;
      continue;
    }
    if (d.keys.length === 0 && recorded.length > 0) {
      findings.push({ reason: 'key_missing', deviceId: d.deviceId, detail: `the ledger recorded ${recorded.length} key(s) for ${d.deviceId}, the bundle presents it as an unsigned device` });
    }
    const set = new Set(recorded.map((k) => normalisePublicKey(k) ?? k));
    for (const k of d.keys) {
      const hex = normalisePublicKey(k.publicKey) ?? k.publicKey;
      if (!set.has(hex)) findings.push({ reason: 'key_not_on_chain', deviceId: d.deviceId, detail: `key ${hex} of ${d.deviceId} is not among the keys the ledger recorded for it` });
    }
  }
  report.chain.keysOnChain = keysKnown;
  if (!keysKnown) report.chain.note = 'this ledger records no device keys: signatures were checked against the bundle\'s keys only';
  report.ok = findings.length === 0;
  return report;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The report as text for a human. */
export function formatReport(r: AuditReport): string {
  const lines: string[] = [];
  lines.push(`Audit of settlement ${r.settlementId}: facility ${r.facilityId}, window ${iso(r.window.start)} .. ${iso(r.window.end)}`);
  if (r.recomputed) {
    lines.push(`  recomputed   net ${r.recomputed.netGrams} g, root ${r.recomputed.evidenceRoot}${r.recomputed.complete ? '' : ' (incomplete window)'}`);
  }
  lines.push(`  record       net ${r.record.netGrams} g, root ${r.record.evidenceRoot}`);
  if (r.chain?.checked) {
    lines.push(r.chain.evidenceRoot ? `  chain        net ${r.chain.netGrams} g, root ${r.chain.evidenceRoot}${r.chain.txHash ? ` (tx ${r.chain.txHash})` : ''}` : '  chain        no settlement of this window');
  }
  if (r.chain?.note) lines.push(`  note: ${r.chain.note}`);
  const signed = r.devices.filter((d) => d.signed);
  const unbroken = signed.filter((d) => d.chainUnbroken).length;
  lines.push(`  devices      ${r.devices.length} (${signed.length} signed, ${unbroken}/${signed.length} chains unbroken), ${r.devices.reduce((n, d) => n + d.readings, 0)} readings, ${r.devices.reduce((n, d) => n + d.signatures, 0)} signatures checked`);
  for (const d of r.devices) {
    const starts = d.chainStarts ? ` (new chain at seq ${d.chainStarts.join(', ')})` : '';
    lines.push(`    ${d.deviceId}: ${d.readings} readings, ${d.signed ? `${d.signatures} signed, chain ${d.chainUnbroken ? 'unbroken' : 'BROKEN'}${starts}` : 'unsigned device'}`);
  }
  if (r.findings.length === 0) {
    lines.push(r.ok ? 'RESULT: OK — the settlement is reproduced from the bundle and matches the chain' : 'RESULT: NOT VERIFIED — the chain was not checked');
  } else {
    lines.push(`RESULT: ${r.findings.length} MISMATCH${r.findings.length > 1 ? 'ES' : ''}`);
    for (const f of r.findings) lines.push(`  [${f.reason}]${f.deviceId ? ` ${f.deviceId}${f.seq !== undefined ? `#${f.seq}` : ''}` : ''}: ${f.detail}`);
  }
  return lines.join('\n');
}
