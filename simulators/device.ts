/**
 * One simulated device: it integrates its facility's physical model into cumulative registers (or,
 * for a CEMS, interval masses), numbers its readings, encodes them as the SPEC payload and applies
 * the per-message faults. Pure given its state, the clock values it is fed and its seed: no I/O,
 * no timers, no Math.random. The fleet runner does the MQTT side.
 */
import { MAX_FUTURE_MS, readingsTopic, type Metric, type RejectReason } from '../domain/reading.ts';
import { canonicalLine, lineHash, signLine } from '../domain/signature.ts';
import { emptyFaultCounts, expectRejection, garbagePayload, GARBAGE_KINDS, NO_FAULTS, type FaultCounts, type FaultRates } from './faults.ts';
import { FacilityModel, type DeviceKind, type FacilityProfile, type FacilityState, type KindCounts } from './profiles.ts';
import { BASE, initialRegister, metricsOf, scaled, unitOf } from './meters.ts';
import { Rng, hashSeed } from './prng.ts';

export { metricsOf, scaled } from './meters.ts';

/** Skews in minutes; those above +5 are refused by the platform. */
const SKEW_MINUTES = [-4, -3, -2, 2, 3, 4, 6, 7, 8] as const;

export interface DeviceSpec {
  facilityId: string;
  deviceId: string;
  kind: DeviceKind;
  /** Position in the fleet: picks the units and the ts format, so a fleet sends a mix. */
  index: number;
  profile: FacilityProfile;
  /** Seed of the facility's model (shared by its devices so they see the same weather). */
  facilitySeed: number;
  /** The facility's devices by kind: shares of load and solar, and whether export is metered. */
  facilityKinds: KindCounts;
}

export interface DeviceOptions {
  /** Run seed (with the device id it seeds the device's own streams). */
  seed: string;
  faults?: FaultRates;
  /** Settlement window and grace, for `late` readings (ts in an already settled window). */
  windowMs?: number;
  graceMs?: number;
  /**
   * The device's Ed25519 key (32-byte seed, hex; the fleet keeps it in the state file): every reading
   * is signed over its canonical line, `prev` chaining it to the one before by seq. Absent: unsigned.
   */
  signKey?: string;
}

export interface RegisterState {
  /** Integer value in the base unit (Wh, L, g). For co2_direct only the carry is used. */
  base: number;
  /** Fraction of a base unit not yet counted. */
  carry: number;
}

/** What the state file keeps per device. */
export interface DeviceState {
  facilityId: string;
  kind: DeviceKind;
  /** Last seq used (sent, dropped or pending). */
  seq: number;
  /** Time the registers were last integrated to (epoch ms); null before the first reading. */
  lastTime: number | null;
  registers: Partial<Record<Metric, RegisterState>>;
  rng: number;
  faultRng: number;
  /** How far the device's clock runs ahead after a `skew` within the allowance (ms; absent: 0). */
  clockOffsetMs?: number;
  /** ts of the last reading the platform is expected to store (the lower neighbour of the next one). */
  lastTs?: number;
  /** Signing devices: hex SHA-256 of the canonical line of the last reading generated (the next one's `prev`). */
  prev?: string;
}

export interface Reading {
  seq: number;
  ts: string | number;
  metric: Metric;
  value: number;
  unit: string;
  reset?: boolean;
  /** Signed devices: the hash of the previous reading's canonical line ('' for the first) and the signature. */
  prev?: string;
  sig?: string;
}

export type MessageKind = 'reading' | 'duplicate' | 'garbage';

/** One MQTT message to publish. */
export interface Outgoing {
  kind: MessageKind;
  deviceId: string;
  topic: string;
  payload: Buffer;
  /** Seqs of the readings it carries (none for garbage). */
  seqs: number[];
  /** Reason the platform should refuse it with, when a fault makes it invalid. */
  expect?: RejectReason;
  /** Faults applied to it: drop never reaches here; late, skew, reset, reorder, duplicate, garbage. */
  faults: string[];
}

export interface TickResult {
  /** Messages to publish, in order. */
  messages: Outgoing[];
  /** The readings generated this tick (also when dropped). */
  readings: Reading[];
  dropped: boolean;
}

export class DeviceSim {
  readonly spec: DeviceSpec;
  readonly metrics: Metric[];
  readonly units: string[];
  readonly topic: string;
  readonly tsFormat: 'iso' | 'epoch';
  readonly counts: FaultCounts = emptyFaultCounts();
  private readonly model: FacilityModel;
  private readonly faults: FaultRates;
  private readonly windowMs: number;
  private readonly graceMs: number;
  private readonly signKey: string | undefined;
  private readonly rng: Rng;
  private readonly faultRng: Rng;
  private s: DeviceState;
  /** A message held back by `reorder`, sent after the next one. */
  private held: Outgoing | null = null;
  /** Messages delayed by `late` until their window has been settled. */
  private delayed: { msg: Outgoing; releaseAt: number }[] = [];

  constructor(spec: DeviceSpec, opts: DeviceOptions, state?: DeviceState) {
    this.spec = spec;
    this.metrics = metricsOf(spec.kind, spec.facilityKinds);
    this.units = this.metrics.map((m, k) => unitOf(m, spec.index, k));
    this.topic = readingsTopic(spec.facilityId, spec.deviceId);
    this.tsFormat = spec.index % 3 === 2 ? 'epoch' : 'iso';
    this.model = new FacilityModel(spec.profile, spec.facilitySeed);
    this.faults = opts.faults ?? NO_FAULTS;
    this.windowMs = opts.windowMs ?? 3_600_000;
    this.graceMs = opts.graceMs ?? 300_000;
    this.signKey = opts.signKey;
    if (state) {
      this.s = structuredClone(state);
    } else {
      const init = new Rng(hashSeed(opts.seed, spec.deviceId, 'init'));
      this.s = {
        facilityId: spec.facilityId,
        kind: spec.kind,
        seq: 0,
        lastTime: null,
        registers: Object.fromEntries(this.metrics.map((m) => [m, { base: initialRegister(m, init), carry: 0 }])),
        rng: hashSeed(opts.seed, spec.deviceId, 'model'),
        faultRng: hashSeed(opts.seed, spec.deviceId, 'faults'),
      };
    }
    for (const m of this.metrics) this.s.registers[m] ??= { base: 0, carry: 0 };
    this.rng = new Rng(this.s.rng);
    this.faultRng = new Rng(this.s.faultRng);
  }

  get deviceId(): string {
    return this.spec.deviceId;
  }

  get lastSeq(): number {
    return this.s.seq;
  }

  /** A copy of the state to persist (the held reorder message, if any, is not part of it: flush first). */
  state(): DeviceState {
    return { ...structuredClone(this.s), rng: this.rng.state, faultRng: this.faultRng.state };
  }

  /** Skips seqs (after an unclean stop, past any the platform may have seen since the last save). */
  advanceSeq(n: number): void {
    this.s.seq += n;
  }

  /** Register value in the base unit (tests). */
  register(metric: Metric): number {
    return this.s.registers[metric]?.base ?? 0;
  }

  /** Produces this tick's messages at time `now` (epoch ms). */
  tick(now: number): TickResult {
    const increments = this.integrate(this.s.lastTime ?? now, now);
    this.s.lastTime = Math.max(this.s.lastTime ?? now, now);

    // content faults are exclusive: one draw picks at most one of drop, late, skew, reset
    const f = this.faults;
    const u = this.faultRng.next();
    const badsig = f.badsig ?? 0;
    let content =
      u < f.drop ? 'drop'
      : u < f.drop + f.late ? 'late'
      : u < f.drop + f.late + f.skew ? 'skew'
      : u < f.drop + f.late + f.skew + f.reset ? 'reset'
      : this.signKey !== undefined && u < f.drop + f.late + f.skew + f.reset + badsig ? 'badsig'
      : null;
    // A message held back by reorder is released after the next stored one: keep that next one plain.
    if ((content === 'skew' || content === 'late') && this.held) content = null;

    // ts never decreases along seq (SPEC): the device clock only runs ahead after an accepted skew.
    let ts = now + (this.s.clockOffsetMs ?? 0);
    const applied: string[] = [];
    let expect: RejectReason | undefined;
    // Stamped back in time, a reading would be the higher neighbour of a delayed one with a later ts
    // (refusing that one when it arrives): backward skews only while nothing is delayed.
    const skewMinutes = content === 'skew' ? this.faultRng.pick(SKEW_MINUTES) : 0;
    if (content === 'skew' && skewMinutes < 0 && this.delayed.length > 0) content = null;
    if (content === 'late') {
      applied.push('late');
      this.counts.late += this.metrics.length;
    } else if (content === 'skew') {
      const shift = skewMinutes * 60_000;
      applied.push('skew');
      this.counts.skew += this.metrics.length;
      if (shift > MAX_FUTURE_MS) {
        ts = now + shift;
        this.counts.skewFuture += this.metrics.length;
        expect = 'future_ts';
      } else if (shift > 0) {
        // The clock jumps ahead and stays ahead (within the allowance): later readings follow it.
        this.s.clockOffsetMs = Math.max(this.s.clockOffsetMs ?? 0, shift);
        ts = now + this.s.clockOffsetMs;
      } else {
        // A reading stamped back in time: refused when before the previous stored reading's ts.
        ts = Math.max(0, ts + shift);
        if (this.s.lastTs !== undefined && ts < this.s.lastTs) expect = 'ts_out_of_order';
      }
    }
    // badsig: the genuine readings go out as usual; a forged copy (another value under their
    // signatures, as someone without the device's key would inject) follows and must be refused.
    const forge = content === 'badsig';
    if (content !== 'drop' && !expect) this.s.lastTs = Math.max(this.s.lastTs ?? ts, ts);
    const resetMetric = content === 'reset' ? this.metrics.find((m) => m !== 'co2_direct') : undefined;
    if (resetMetric) {
      applied.push('reset');
      this.counts.reset++;
    }

    const readings: Reading[] = this.metrics.map((metric, k) => {
      const reg = this.s.registers[metric]!;
      const total = reg.carry + increments[k];
      const whole = Math.floor(total);
      reg.carry = total - whole;
      let reset = false;
      let value: number;
      if (metric === 'co2_direct') {
        value = whole;
      } else if (metric === resetMetric) {
        reg.base = Math.floor(this.rng.range(0, 1000)) + whole;
        reset = true;
        value = reg.base;
      } else {
        reg.base += whole;
        value = reg.base;
      }
      const unit = this.units[k];
      const r: Reading = {
        seq: ++this.s.seq,
        ts: this.tsFormat === 'iso' ? new Date(ts).toISOString() : ts,
        metric,
        value: scaled(value, BASE[metric].decimals[unit]),
        unit,
      };
      if (reset) r.reset = true;
      if (this.signKey !== undefined) this.sign(r, ts);
      return r;
    });

    if (content === 'drop') {
      this.counts.drop += readings.length;
      return { messages: [], readings, dropped: true };
    }

    const messages: Outgoing[] = [];
    const seqs = readings.map((r) => r.seq);
    if (f.garbage > 0 && this.faultRng.next() < f.garbage) {
      const kind = this.faultRng.pick(GARBAGE_KINDS);
      const g = garbagePayload(kind, readings[0].seq, new Date(now).toISOString(), this.metrics[0], this.units[0]);
      messages.push({ kind: 'garbage', deviceId: this.deviceId, topic: this.topic, payload: g.bytes, seqs: [], expect: g.reason, faults: ['garbage', kind] });
      this.counts.garbage++;
      expectRejection(this.counts, g.reason);
    }

    const payload = Buffer.from(JSON.stringify(readings.length === 1 ? readings[0] : readings));
    const msg: Outgoing = { kind: 'reading', deviceId: this.deviceId, topic: this.topic, payload, seqs, expect, faults: applied };
    if (expect) expectRejection(this.counts, expect, seqs.length);
    if (forge) {
      const forged = readings.map((r) => ({ ...r, value: forgedValue(r.value) }));
      messages.push({
        kind: 'garbage',
        deviceId: this.deviceId,
        topic: this.topic,
        payload: Buffer.from(JSON.stringify(forged.length === 1 ? forged[0] : forged)),
        seqs: [],
        expect: 'bad_signature',
        faults: ['badsig'],
      });
      this.counts.badsig += forged.length;
      expectRejection(this.counts, 'bad_signature', forged.length);
    }

    // Readings delayed by `late` go out once their window has been settled: late arrivals (lower seqs)
    // that the platform stores and the oracle counts in the next unsettled window.
    const due = this.delayed.filter((x) => x.releaseAt <= now).map((x) => x.msg);
    this.delayed = this.delayed.filter((x) => x.releaseAt > now);
    if (content === 'late') {
      this.delayed.push({ msg, releaseAt: now + this.windowMs + this.graceMs });
      messages.push(...due);
      return { messages, readings, dropped: false };
    }

    // delivery faults only on otherwise clean messages, so each has one predictable outcome
    const d = content === null && this.held === null ? this.faultRng.next() : 1;
    if (this.held) {
      // release the held one after a message the platform stores (one it refuses would not pass it)
      messages.push(msg);
      if (!msg.expect) {
        messages.push(this.held);
        this.held = null;
      }
    } else if (d < f.reorder) {
      // Sent after the next one: a late arrival, stored (any arrival order consistent with its neighbours is).
      msg.faults.push('reorder');
      this.counts.reorder++;
      this.held = msg;
    } else if (d < f.reorder + f.duplicate) {
      messages.push(msg, { ...msg, kind: 'duplicate', faults: [...msg.faults, 'duplicate'] });
      this.counts.duplicate += seqs.length;
    } else {
      messages.push(msg);
    }
    messages.push(...due);
    return { messages, readings, dropped: false };
  }

  /** Releases a message held back for reordering or delayed by `late` (they go out now, in seq order). */
  flush(): Outgoing[] {
    const out = this.delayed.map((x) => x.msg);
    this.delayed = [];
    const h = this.held;
    this.held = null;
    if (h) {
      // Sent in order after all: not a reorder any more.
      h.faults = h.faults.filter((x) => x !== 'reorder');
      this.counts.reorder--;
      out.push(h);
    }
    return out.sort((a, b) => (a.seqs[0] ?? 0) - (b.seqs[0] ?? 0));
  }

  /**
   * Signs a reading over its canonical line (value as JSON prints it, ts as epoch ms) and moves the
   * chain on: the next reading's prev is this line's hash, whether this one is sent, dropped or
   * refused (the platform's chain then shows the gap).
   */
  private sign(r: Reading, tsMs: number): void {
    const prev = this.s.prev ?? '';
    const line = canonicalLine({ deviceId: this.spec.deviceId, seq: r.seq, ts: tsMs, metric: r.metric, value: JSON.stringify(r.value), unit: r.unit, reset: r.reset === true, prev });
    r.prev = prev;
    r.sig = signLine(this.signKey as string, line);
    this.s.prev = lineHash(line);
  }

  /** Increments (in base units) of each metric from t0 to t1: midpoint rule, <= 240 steps. */
  private integrate(t0: number, t1: number): number[] {
    const out = this.metrics.map(() => 0);
    if (!(t1 > t0)) return out;
    const steps = Math.min(240, Math.max(1, Math.ceil((t1 - t0) / 60_000)));
    const dt = (t1 - t0) / steps;
    const hours = dt / 3_600_000;
    for (let i = 0; i < steps; i++) {
      const s = this.model.at(t0 + (i + 0.5) * dt);
      for (let k = 0; k < this.metrics.length; k++) out[k] += this.rateOf(this.metrics[k], s) * hours * 1000;
    }
    return out;
  }

  /** This device's share of the facility's flows, per hour in thousandths of the base unit's parent (kWh, m3, kg). */
  private rateOf(metric: Metric, s: FacilityState): number {
    const c = this.spec.facilityKinds;
    const net = (s.loadKw - (c.solar > 0 ? s.solarKw : 0)) / Math.max(1, c.grid);
    switch (metric) {
      case 'electricity_import':
        return Math.max(0, net);
      case 'electricity_export':
        return Math.max(0, -net);
      case 'renewable_generation':
        return s.solarKw / Math.max(1, c.solar);
      case 'natural_gas':
        return s.gasM3h / Math.max(1, c.gas);
      case 'co2_direct':
        return s.cemsKgH / Math.max(1, c.cems);
    }
  }
}

/** A value that differs from `v`, as a forger would change it. */
function forgedValue(v: number): number {
  return v + 1;
}
