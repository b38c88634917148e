/**
 * The live progress line (rewritten in place on a TTY, one line every few seconds otherwise) and the
 * human summary. Pure formatting plus a small reporter that owns one timer.
 */
import type { FaultCounts } from './faults.ts';

export interface FleetStats {
  devices: number;
  facilities: number;
  /** Devices with an open MQTT session now. */
  connected: number;
  elapsedSeconds: number;
  /** Readings generated (each has a seq; dropped ones included). */
  readings: number;
  /** MQTT messages published (readings, duplicates, garbage) and acknowledged (PUBACK). */
  sent: number;
  acked: number;
  /**
   * Acknowledged readings the platform is expected to store: duplicates, garbage and readings a
   * fault makes it refuse (reordered, skewed too far) are acknowledged too but not counted here.
   */
  readingsAcked: number;
  /** Messages published and not yet acknowledged. */
  inFlight: number;
  /** Rejections the platform reports (all reasons, from its metrics), when known. */
  rejected: number | null;
  /** Acknowledged messages per second over the last few seconds. */
  rate: number;
  reconnects: number;
  connectionErrors: number;
  /** Ticks skipped because a device's unacknowledged queue was full. */
  bufferFull: number;
  /** Readings restored from the state file and sent again. */
  redelivered: number;
  /** Devices whose credentials the broker refused. */
  refused: number;
  faults: FaultCounts;
}

export interface DeviceSummary {
  deviceId: string;
  facilityId: string;
  kind: string;
  lastSeq: number;
  readingsAcked: number;
  /** Seqs acknowledged and expected to be stored (as readingsAcked), when `recordAcks` was set. */
  ackedSeqs?: number[];
}

/** One rejection reason of the run: how many the platform logged, how many the faults explain. */
export interface ReasonCount {
  reason: string;
  count: number;
  /** Injected faults that should have been refused with this reason. */
  expected: number;
  /** Refusals beyond what the faults explain. */
  unexpected: number;
  /** The fault that produces this reason, when one does. */
  fault?: string;
}

/** The platform's rejections of this run's facilities, from its rejection log (`--api`). */
export interface RejectionReport {
  total: number;
  /** Reasons seen or expected, most frequent first. */
  byReason: ReasonCount[];
  unexpected: number;
  /** A facility's log had more rows than one page: counts are lower bounds. */
  truncated: boolean;
}

/** Which injected fault makes the platform refuse with a reason. */
export const REASON_FAULT: Record<string, string> = {
  invalid_json: 'garbage',
  invalid_utf8: 'garbage',
  unknown_metric: 'garbage',
  unknown_unit: 'garbage',
  invalid_value: 'garbage',
  invalid_shape: 'garbage',
  invalid_ts: 'garbage',
  future_ts: 'skew',
  ts_out_of_order: 'skew',
  seq_not_increasing: 'reorder',
  invalid_topic: 'spoof',
};

/** Compares the rejections logged with those the faults explain, reason by reason. */
export function classifyRejections(seen: { byReason: Record<string, number>; truncated: boolean }, expected: Partial<Record<string, number>>): RejectionReport {
  const reasons = new Set([...Object.keys(seen.byReason), ...Object.keys(expected)]);
  const byReason: ReasonCount[] = [...reasons].map((reason) => {
    const count = seen.byReason[reason] ?? 0;
    const exp = expected[reason] ?? 0;
    return { reason, count, expected: exp, unexpected: Math.max(0, count - exp), ...(REASON_FAULT[reason] ? { fault: REASON_FAULT[reason] } : {}) };
  });
  byReason.sort((a, b) => b.count - a.count || b.expected - a.expected || (a.reason < b.reason ? -1 : 1));
  return {
    total: byReason.reduce((n, r) => n + r.count, 0),
    byReason,
    unexpected: byReason.reduce((n, r) => n + r.unexpected, 0),
    truncated: seen.truncated,
  };
}

/** `320: 315 duplicate_conflict (unexpected), 5 invalid_value (expected: fault garbage)` */
export function formatRejections(r: RejectionReport): string {
  const parts = r.byReason.map((x) => {
    const from = `fault ${x.fault ?? 'injected'}`;
    if (x.expected === 0) return `${x.count} ${x.reason} (unexpected)`;
    if (x.count === x.expected) return `${x.count} ${x.reason} (expected: ${from})`;
    if (x.count < x.expected) return `${x.count} ${x.reason} (expected ${x.expected}: ${from})`;
    return `${x.count} ${x.reason} (${x.expected} expected: ${from}; ${x.unexpected} unexpected)`;
  });
  return `${r.truncated ? 'at least ' : ''}${r.total}${parts.length ? `: ${parts.join(', ')}` : ''}`;
}

export interface FleetSummary extends FleetStats {
  startedAt: string;
  stoppedAt: string;
  /** Reading messages still unacknowledged at stop, kept in the state file for the next run. */
  unacked: number;
  statePath: string | null;
  /** The rejections of this run by reason, expected or not; null without a rejection log (no --api). */
  rejections: RejectionReport | null;
  /** Settlement window and grace the fleet assumed (late readings, baselines). */
  windowSeconds: number;
  graceSeconds: number;
  facilityIds: string[];
  deviceDetails: DeviceSummary[];
}

function faultText(f: FaultCounts): string {
  const parts: string[] = [];
  for (const k of ['drop', 'duplicate', 'reorder', 'late', 'garbage', 'reset', 'skew'] as const) if (f[k]) parts.push(`${k} ${f[k]}`);
  if (f.skewFuture) parts.push(`(future ${f.skewFuture})`);
  if (f.badsig) parts.push(`badsig ${f.badsig}`);
  if (f.badauth.attempted) parts.push(`badauth ${f.badauth.refused}/${f.badauth.attempted} refused`);
  if (f.spoof.attempted) parts.push(`spoof ${f.spoof.sent}`);
  return parts.join(' ');
}

export function formatProgress(s: FleetStats): string {
  const faults = faultText(s.faults);
  return [
    `${s.connected}/${s.devices} dev`,
    `sent ${s.sent}`,
    `acked ${s.acked}`,
    `rejected ${s.rejected ?? '?'}`,
    `in flight ${s.inFlight}`,
    `${s.rate.toFixed(1)} msg/s`,
    ...(s.reconnects ? [`reconnects ${s.reconnects}`] : []),
    ...(faults ? [`faults: ${faults}`] : []),
  ].join(' | ');
}

export function formatSummary(s: FleetSummary): string {
  const expected = Object.entries(s.faults.expectedRejections)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const lines = [
    `simulated ${s.devices} devices in ${s.facilities} facilities for ${s.elapsedSeconds.toFixed(1)} s`,
    `  readings ${s.readings}, messages sent ${s.sent}, acknowledged ${s.acked} (${s.readingsAcked} readings), unacknowledged ${s.unacked}`,
    s.rejections
      ? `  rejected by the platform: ${formatRejections(s.rejections)}`
      : `  rejected by the platform: ${s.rejected ?? 'unknown (no --api)'}; expected from injected faults: ${expected || 'none'}`,
    `  reconnects ${s.reconnects}, connection errors ${s.connectionErrors}, refused devices ${s.refused}, buffer full ${s.bufferFull}, redelivered ${s.redelivered}`,
    `  faults: ${faultText(s.faults) || 'none'}`,
  ];
  if (s.rejections?.unexpected) lines.push(`  ${s.rejections.unexpected} rejections no injected fault explains: see GET /v1/facilities/{id}/rejections`);
  if (s.statePath) lines.push(`  state saved to ${s.statePath}`);
  return lines.join('\n');
}

export interface ProgressSink {
  write(text: string): unknown;
  isTTY?: boolean;
}

/** Prints the progress line every `intervalMs` (default 500 ms on a TTY, 5 s otherwise). */
export function startProgress(sink: ProgressSink, stats: () => FleetStats, intervalMs?: number): { stop(): void } {
  const tty = !!sink.isTTY;
  const every = intervalMs ?? (tty ? 500 : 5000);
  const print = () => {
    const line = formatProgress(stats());
    sink.write(tty ? `\r\x1b[2K${line}` : `${line}\n`);
  };
  const timer = setInterval(print, every);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      print();
      if (tty) sink.write('\n');
    },
  };
}
