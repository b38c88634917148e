/**
 * The fleet runner: starts a session per device (session.ts: the MQTT client, pending publishes,
 * network faults), a timer per device at the configured rate, a bounded queue of unacknowledged
 * readings (kept in the state file across restarts and sent again with the same seq), live stats and
 * the final summary. The plan and credentials come from fleet-plan.ts. `startFleet` is what the CLI,
 * `npm start` and the end-to-end test call.
 */
import type { MqttClient } from 'mqtt';
import { checkBrokerUrl, endClient } from './connection.ts';
import { defaultOf } from '../domain/config.ts';
import { silentLogger, type Logger } from '../domain/logger.ts';
import { DeviceSim, type DeviceState, type Outgoing } from './device.ts';
import { simErrors } from './errors.ts';
import { addFaultCounts, emptyFaultCounts, parseFaults, type FaultCounts, type FaultRates } from './faults.ts';
import { resolvePlan } from './fleet-plan.ts';
import type { FacilityPlan, SimCredentials } from './plan.ts';
import { countKinds, getProfile, type ProfileName } from './profiles.ts';
import { rejectionDelta, type ApiTarget, type RejectionSnapshot } from './register.ts';
import { classifyRejections, startProgress, type DeviceSummary, type FleetStats, type FleetSummary, type ProgressSink } from './progress.ts';
import { connectRunner, publish as publishOn, runNetFaults, waitUntil, type FleetCounters, type Runner, type SessionContext, type SessionMessage } from './session.ts';
import { defaultStatePath, emptyState, loadState, lockState, saveState, type SimState, type StateLock } from './state.ts';

export type { FleetStats, FleetSummary } from './progress.ts';
export { checkBrokerUrl } from './connection.ts';

export interface FleetOptions {
  /** Broker URL: mqtt://host:port (also mqtts, ws, wss). */
  url: string;
  /** Number of devices (default 4, or every device of the credentials list). */
  devices?: number;
  /** Readings (messages) per second per device; fractional allowed (default 1). */
  rate?: number;
  faults?: FaultRates | string;
  /**
   * Every device signs its readings (SPEC "Device signatures"): a key per device, made once and kept
   * in the state file, registered as the device's `publicKey` with --api. Default on (`false`:
   * unsigned, as before keys existed; a device registered with a key then has its readings refused).
   */
  sign?: boolean;
  seed?: string | number;
  /** Stop by itself after this many seconds (default: run until stop()). */
  duration?: number;
  /**
   * State file (default data/simulator-state-{prefix}.json, data/simulator-state.json for the prefix
   * `sim`); null for none. Locked while the fleet runs: a second live simulator on it is refused.
   */
  statePath?: string | null;
  /** Device credentials, or a JSON file of them (`--credentials`). */
  credentials?: SimCredentials[];
  credentialsFile?: string;
  /** Register facilities and devices through the gateway with an admin key. */
  api?: ApiTarget;
  /** Facility count when planning (default: one per four devices). */
  facilities?: number;
  /** Profiles cycled over the facilities (default efficient, heavy, standard). */
  profiles?: ProfileName[];
  /** Id prefix of planned facilities and devices (default `sim`). */
  prefix?: string;
  /** Owner address of registered facilities (default: ownerKeyDir's keys, else derived from the seed). */
  owner?: string;
  /**
   * Directory of the planned facilities' owner keys (`{dir}/{facilityId}.key`, made once 0600 and
   * reused; `npm start` and `npm run simulate` use `$DATA_DIR/keys`): registered facilities are owned
   * by those keys' addresses, so their credits can be retired. Ignored when `owner` is given.
   */
  ownerKeyDir?: string;
  /** Settlement window and grace (s): late readings and suggested baselines (default: WINDOW_SECONDS / GRACE_SECONDS's defaults). */
  windowSeconds?: number;
  graceSeconds?: number;
  /** Margin of the suggested baselines (default 0.3). */
  baselineMargin?: number;
  /** Clock for the readings' ts (default Date.now); timers are real time. */
  now?: () => number;
  logger?: Logger;
  /** Where the progress line goes (e.g. process.stderr); false or absent for none. */
  progress?: ProgressSink | false;
  progressIntervalMs?: number;
  /** Reports the platform's rejection count (e.g. from the gateway /metrics) for the progress line. */
  rejectedCount?: () => Promise<number | undefined>;
  /**
   * Reads the rejections the platform logged for these facilities (e.g. `rejectionLog(api)`): read
   * once before the devices connect and once at stop, the difference by reason goes to the summary
   * next to what the injected faults explain.
   */
  rejectionLog?: (facilityIds: string[]) => Promise<RejectionSnapshot | undefined>;
  reconnectPeriodMs?: number;
  /** How long to wait for the first CONNACKs before giving up (default 10 s). */
  connectTimeoutMs?: number;
  /** Unacknowledged messages per device before ticks are skipped (default 10,000). */
  maxPending?: number;
  /** How long stop() waits for in-flight messages to be acknowledged (default 5 s). */
  drainTimeoutMs?: number;
  /** How often the state file is written while running (default 2 s). */
  stateSaveMs?: number;
  /** Keep every acknowledged seq per device in the summary (tests, end-to-end checks). */
  recordAcks?: boolean;
  /** Called for every message published (tests). */
  onMessage?: (m: Outgoing) => void;
  fetch?: typeof fetch;
}

export interface Fleet {
  facilities: FacilityPlan[];
  stats(): FleetStats;
  /** Stops ticking, waits (bounded) for acknowledgements, disconnects, saves the state. Idempotent. */
  stop(): Promise<FleetSummary>;
  /** Resolves with the summary once the fleet has stopped (after `duration`, or stop()). */
  done: Promise<FleetSummary>;
}

/**
 * Starts the fleet. The state file is locked for the fleet's lifetime (SIM_STATE_LOCKED when another
 * live simulator holds it); the lock goes at stop, on a failed start, or when the process exits.
 */
export async function startFleet(opts: FleetOptions): Promise<Fleet> {
  const log = (opts.logger ?? silentLogger).child({ component: 'fleet' });
  checkBrokerUrl(opts.url);
  const statePath = opts.statePath === undefined ? defaultStatePath(opts.prefix) : opts.statePath;
  const lock = statePath ? lockState(statePath, (holder) => log.warn({ statePath, holder }, 'took over a stale state lock (its simulator is gone)')) : undefined;
  try {
    return await startLocked({ ...opts, statePath }, log, lock);
  } catch (err) {
    lock?.release();
    throw err;
  }
}

async function startLocked(opts: FleetOptions, log: Logger, lock: StateLock | undefined): Promise<Fleet> {
  const rate = opts.rate ?? 1;
  if (!(rate > 0 && rate <= 1000)) throw simErrors.USAGE('--rate must be a number of readings per second per device, > 0 and <= 1000');
  if (opts.duration !== undefined && !(opts.duration > 0)) throw simErrors.USAGE('--duration must be a positive number of seconds');
  const faults = typeof opts.faults === 'string' || opts.faults === undefined ? parseFaults(opts.faults) : opts.faults;
  opts = { ...opts, sign: opts.sign ?? true };
  if ((faults.badsig ?? 0) > 0 && !opts.sign) throw simErrors.USAGE('--faults badsig needs signing (not with --no-sign: unsigned devices have no signature to spoil)');
  const seed = String(opts.seed ?? 'mrv');
  const now = opts.now ?? Date.now;
  const windowSeconds = opts.windowSeconds ?? defaultOf('windowSeconds');
  const graceSeconds = opts.graceSeconds ?? defaultOf('graceSeconds');
  const statePath = opts.statePath ?? null;
  const maxPending = opts.maxPending ?? 10_000;

  const loaded = statePath ? loadState(statePath) : undefined;
  const state: SimState = loaded ?? emptyState(seed);
  if (loaded && loaded.seed !== seed) log.warn({ stateSeed: loaded.seed, seed }, 'state file was written with another seed; devices continue from their saved registers');

  // credentials: given > file > registered via the API > saved in the state file > none
  const plan = await resolvePlan(opts, state, { seed, rate, windowSeconds, now, statePath, log });
  const facilityIds = plan.map((f) => f.facilityId);
  const rejectionsBefore = opts.rejectionLog ? await opts.rejectionLog(facilityIds) : undefined;

  const counters: FleetCounters = { sent: 0, acked: 0, readings: 0, reconnects: 0, connectionErrors: 0, bufferFull: 0, redelivered: 0 };
  const netFaults: FaultCounts = emptyFaultCounts();
  const unclean = !!loaded && !loaded.clean;
  const seqJump = Math.max(1000, Math.ceil(rate * 2 * 600));
  const startedAt = Date.now();
  let stopping = false;

  const runners: Runner[] = [];
  for (const f of plan) {
    const profile = getProfile(f.profile);
    const facilityKinds = countKinds(f.devices.map((d) => d.kind));
    for (const d of f.devices) {
      let saved: DeviceState | undefined = state.devices[d.deviceId];
      if (saved && (saved.facilityId !== d.facilityId || saved.kind !== d.kind)) {
        log.warn({ deviceId: d.deviceId }, 'saved state belongs to another facility or kind; starting its registers afresh');
        saved = undefined;
      }
      const sim = new DeviceSim(
        { facilityId: d.facilityId, deviceId: d.deviceId, kind: d.kind, index: d.index, profile, facilitySeed: f.seed, facilityKinds },
        { seed, faults, windowMs: windowSeconds * 1000, graceMs: graceSeconds * 1000, ...(opts.sign ? { signKey: state.keys?.[d.deviceId] } : {}) },
        saved,
      );
      const old = state.devices[d.deviceId];
      if (!saved && old) sim.advanceSeq(old.seq);
      if (unclean && old) sim.advanceSeq(seqJump);
      runners.push({ sim, plan: d, client: undefined as unknown as MqttClient, pending: new Map(), nextId: 0, connected: false, errors: 0, readingsAcked: 0, ...(opts.recordAcks ? { ackedSeqs: [] } : {}) });
    }
  }
  if (unclean) log.warn({ seqJump }, 'the last run did not stop cleanly: seqs skip ahead past any sent after the last save');

  let lastError: Error | undefined;
  const session: SessionContext = {
    url: opts.url,
    log,
    counters,
    stopping: () => stopping,
    reconnectPeriodMs: opts.reconnectPeriodMs,
    connectTimeoutMs: opts.connectTimeoutMs,
    onError: (err) => {
      lastError = err;
    },
    onMessage: opts.onMessage,
  };
  const publish = (r: Runner, m: SessionMessage, outgoing?: Outgoing): void => publishOn(session, r, m, outgoing);

  // connect every device; mqtt.js queues QoS 1 publishes while offline and resends them in order
  for (const r of runners) {
    const d = r.plan;
    connectRunner(session, r);
    // readings left unacknowledged by the previous run go first, with their original seq
    for (const p of state.pending[d.deviceId] ?? []) {
      publish(r, { kind: 'reading', topic: p.topic, payload: Buffer.from(p.payload, 'utf8'), seqs: p.seqs, expect: p.expect });
      counters.redelivered += p.seqs.length;
    }
  }

  // settled when every device is connected or refused; unreachable when nobody connected and every
  // device has failed twice (a first attempt and a retry)
  const unreachable = () => runners.every((r) => !r.connected && r.errors >= 2);
  const settled = await waitUntil(() => runners.every((r) => r.connected || r.refused) || unreachable(), opts.connectTimeoutMs ?? 10_000);
  const refused = runners.filter((r) => r.refused);
  if (refused.length || !runners.some((r) => r.connected)) {
    stopping = true;
    await Promise.all(runners.map((r) => endClient(r.client)));
    if (refused.length) throw simErrors.CREDENTIALS_REFUSED(refused.map((r) => r.plan.deviceId), refused[0].refused!.message);
    const why = lastError ? ((lastError as NodeJS.ErrnoException).code ?? lastError.message) : `no CONNACK within ${(opts.connectTimeoutMs ?? 10_000) / 1000} s`;
    throw simErrors.BROKER_UNREACHABLE(opts.url, why);
  }
  if (!settled) log.warn({ connected: runners.filter((r) => r.connected).length, devices: runners.length }, 'some devices are not connected yet; they keep trying');

  // the rate of acknowledgements over the last few seconds
  const samples: [number, number][] = [[Date.now(), 0]];
  let rejectedBase: number | undefined;
  let rejectedNow: number | undefined;
  const pollRejected = async () => {
    if (!opts.rejectedCount) return;
    const v = await opts.rejectedCount();
    if (v === undefined) return;
    if (rejectedBase === undefined) rejectedBase = v;
    rejectedNow = v;
  };
  await pollRejected();

  function stats(): FleetStats {
    const t = Date.now();
    samples.push([t, counters.acked]);
    while (samples.length > 2 && t - samples[1][0] >= 5000) samples.shift();
    const [t0, a0] = samples[0];
    const faultsNow = addFaultCounts(addFaultCounts(emptyFaultCounts(), netFaults), runners.reduce((acc, r) => addFaultCounts(acc, r.sim.counts), emptyFaultCounts()));
    return {
      devices: runners.length,
      facilities: plan.length,
      connected: runners.filter((r) => r.connected).length,
      elapsedSeconds: (t - startedAt) / 1000,
      readings: counters.readings,
      sent: counters.sent,
      acked: counters.acked,
      readingsAcked: runners.reduce((n, r) => n + r.readingsAcked, 0),
      inFlight: runners.reduce((n, r) => n + r.pending.size, 0),
      rejected: rejectedNow !== undefined && rejectedBase !== undefined ? rejectedNow - rejectedBase : null,
      rate: t > t0 ? ((counters.acked - a0) * 1000) / (t - t0) : 0,
      reconnects: counters.reconnects,
      connectionErrors: counters.connectionErrors,
      bufferFull: counters.bufferFull,
      redelivered: counters.redelivered,
      refused: runners.filter((r) => r.refused).length,
      faults: faultsNow,
    };
  }

  function snapshot(clean: boolean): SimState {
    const devices = { ...state.devices };
    const pending = { ...state.pending };
    for (const r of runners) {
      devices[r.plan.deviceId] = r.sim.state();
      const left = [...r.pending.values()].filter((p) => p.kind === 'reading').map(({ kind: _kind, ...p }) => p);
      if (left.length) pending[r.plan.deviceId] = left;
      else delete pending[r.plan.deviceId];
    }
    return { ...state, seed, savedAt: Date.now(), clean, devices, pending };
  }

  function save(clean: boolean): void {
    if (!statePath) return;
    try {
      saveState(statePath, snapshot(clean));
    } catch (err) {
      log.warn({ err: (err as Error).message, statePath }, 'could not save the simulator state');
    }
  }

  // ticks: one timer per device, spread evenly over the first interval
  const intervalMs = 1000 / rate;
  const startTimers: NodeJS.Timeout[] = [];
  runners.forEach((r, i) => {
    const tick = () => {
      if (stopping || r.refused) return;
      if (r.pending.size >= maxPending) {
        counters.bufferFull++;
        return;
      }
      const res = r.sim.tick(now());
      counters.readings += res.readings.length;
      for (const m of res.messages) publish(r, m, m);
    };
    startTimers.push(
      setTimeout(() => {
        if (stopping) return;
        tick();
        r.timer = setInterval(tick, intervalMs);
      }, (i * intervalMs) / runners.length),
    );
  });

  save(false);
  const saver = setInterval(() => save(false), opts.stateSaveMs ?? 2000);
  const poller = opts.rejectedCount ? setInterval(() => void pollRejected(), 2000) : undefined;
  const progress = opts.progress ? startProgress(opts.progress, stats, opts.progressIntervalMs) : undefined;

  // network faults, in the background: wrong passwords, then publishes to other devices' topics
  const faultTasks = runNetFaults(session, runners, faults, netFaults, seed, now);

  let stopPromise: Promise<FleetSummary> | undefined;
  let resolveDone!: (s: FleetSummary) => void;
  const done = new Promise<FleetSummary>((resolve) => (resolveDone = resolve));
  const durationTimer = opts.duration !== undefined ? setTimeout(() => void stop(), opts.duration * 1000) : undefined;

  function stop(): Promise<FleetSummary> {
    stopPromise ??= (async () => {
      stopping = true;
      if (durationTimer) clearTimeout(durationTimer);
      for (const t of startTimers) clearTimeout(t);
      for (const r of runners) if (r.timer) clearInterval(r.timer);
      clearInterval(saver);
      if (poller) clearInterval(poller);
      for (const r of runners) for (const m of r.sim.flush()) publish(r, m, m);
      await faultTasks;
      await waitUntil(() => runners.every((r) => r.pending.size === 0 || !r.connected || r.refused), opts.drainTimeoutMs ?? 5000);
      await pollRejected();
      await Promise.all(runners.map((r) => endClient(r.client)));
      save(true);
      lock?.release();
      // every message acknowledged was validated and its rejections logged before its PUBACK
      const rejectionsAfter = rejectionsBefore && opts.rejectionLog ? await opts.rejectionLog(facilityIds) : undefined;
      progress?.stop();
      const s = stats();
      const rejections = rejectionsBefore && rejectionsAfter ? classifyRejections(rejectionDelta(rejectionsBefore, rejectionsAfter), s.faults.expectedRejections) : null;
      if (opts.rejectionLog && !rejections) log.warn('could not read the rejections the platform logged; the summary cannot tell expected from unexpected ones');
      const summary: FleetSummary = {
        ...s,
        ...(rejections ? { rejected: rejections.total } : {}),
        rejections,
        windowSeconds,
        graceSeconds,
        startedAt: new Date(startedAt).toISOString(),
        stoppedAt: new Date().toISOString(),
        unacked: runners.reduce((n, r) => n + [...r.pending.values()].filter((p) => p.kind === 'reading').length, 0),
        statePath: statePath ?? null,
        facilityIds,
        deviceDetails: runners.map(
          (r): DeviceSummary => ({
            deviceId: r.plan.deviceId,
            facilityId: r.plan.facilityId,
            kind: r.plan.kind,
            lastSeq: r.sim.lastSeq,
            readingsAcked: r.readingsAcked,
            ...(r.ackedSeqs ? { ackedSeqs: [...r.ackedSeqs].sort((a, b) => a - b) } : {}),
          }),
        ),
      };
      log.info({ sent: summary.sent, acked: summary.acked, unacked: summary.unacked }, 'fleet stopped');
      resolveDone(summary);
      return summary;
    })();
    return stopPromise;
  }

  log.info({ devices: runners.length, facilities: plan.length, rate, url: opts.url }, 'fleet started');
  return { facilities: plan, stats, stop, done };
}
