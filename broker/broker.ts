/**
 * The MQTT broker (aedes 1.2): device authentication, topic ACL, limits, and readings handed to the
 * ingest pipeline with the publish authorisation held until they are durable (PUBACK after commit).
 * See docs/INGESTION.md for the behaviour at each limit. Its options and interface: broker/types.ts.
 * One closure over the sessions of one aedes instance (~400 lines): the hooks share its state.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { Aedes, type AedesOptions, type Client, type PublishPacket, type Subscription } from 'aedes';
import { publishTopicKind, maySubscribe, parseStatus, type DeviceSession } from './acl.ts';
import { coalesceWrites } from './coalesce.ts';
import { feedbackOf, feedbackPayload, feedbackTopic, type Feedback } from './feedback.ts';
import { guardSocket, type Violation } from './guard.ts';
import { ingestMetrics } from './metrics.ts';
import type { IngestResult } from './pipeline.ts';
import { TokenBuckets, addressKey } from './ratelimit.ts';
import { isSlowCheck, verifyDeviceSecret } from '../store/secrets.ts';
import { ID_RE, type Rejection } from '../domain/reading.ts';
import { errors, isError } from '../domain/errors.ts';

import { DEFAULT_LIMITS, type Broker, type BrokerDeps, type BrokerLimits } from './types.ts';

export { DEFAULT_LIMITS, type Broker, type BrokerDeps, type BrokerLimits, type ListenOptions } from './types.ts';

type AuthError = Error & { returnCode: number };
interface Session extends DeviceSession {
  kicked: boolean;
  counted: boolean;
  /** The secret record the session logged in with: a different one in the registry means rotated. */
  secretHash: string;
}

function authError(returnCode: number, message: string): AuthError {
  return Object.assign(new Error(message), { returnCode });
}

/** CONNACK with `returnCode`, written directly (preConnect cannot answer with a code itself). */
function connack(returnCode: number): Buffer {
  return Buffer.from([0x20, 0x02, 0x00, returnCode]);
}

export function buildBroker(deps: BrokerDeps): Broker {
  const log = deps.logger.child({ component: 'broker' });
  const limits: BrokerLimits = { ...DEFAULT_LIMITS, ...deps.limits };
  const m = ingestMetrics(deps.metrics);
  const clock = deps.clock ?? Date.now;
  const { registry, pipeline } = deps;

  const sessions = new WeakMap<Client, Session>();
  /** Authenticated clients per device, from authentication until their socket closes. */
  const live = new Map<string, Set<Client>>();
  /** Last online state written per device: repeated status messages cost no write. */
  const onlineState = new Map<string, boolean>();
  const sockets = new Set<Duplex>();
  const servers: net.Server[] = [];
  let listening = false;
  let starting: Promise<void> | undefined;
  /** CONNECT attempts per source address (refunded on a successful login). */
  const connectBuckets = new TokenBuckets({ perSecond: limits.connectRatePerSecond, burst: limits.connectBurst }, clock);
  const addressOf = new WeakMap<Client, string>();
  let slowLogins = 0;
  let pollTimer: NodeJS.Timeout | undefined;
  /** Unsubscribes from the registry's change notices (a PostgreSQL registry: LISTEN/NOTIFY). */
  let unsubscribe: (() => void) | undefined;
  let polls = 0;
  let lastDataVersion: number | undefined;

  /**
   * Publishes rejections to the device's feedback topic, one message per refused PUBLISH: a JSON array
   * of `{ seq, reason, detail }` (QoS 1, not retained). `then` runs once the message was handed to the
   * subscribers (so it is written before a connection that is being refused closes).
   */
  function feedback(s: DeviceSession, items: Feedback[], then?: () => void): void {
    if (items.length === 0 || aedes.closed) return void then?.();
    const payload = feedbackPayload(items);
    aedes.publish({ cmd: 'publish', topic: feedbackTopic(s.facilityId, s.deviceId), payload, qos: 1, retain: false, dup: false } as PublishPacket, () => then?.());
  }

  function reject(s: DeviceSession, reason: Rejection['reason'], detail: string, payload = '', then?: () => void): void {
    pipeline.recordRejection({ facilityId: s.facilityId, deviceId: s.deviceId, receivedAt: clock(), reason, detail, payload });
    feedback(s, [{ seq: null, reason, detail }], then);
  }

  function setOnline(deviceId: string, online: boolean): void {
    if (onlineState.get(deviceId) === online) return;
    try {
      // A PostgreSQL registry writes it asynchronously (coalesced); a failure is logged like a sync one.
      const done = registry.setOnline(deviceId, online, clock());
      if (done) done.catch((err: unknown) => log.warn({ err, deviceId }, 'could not record online status'));
      onlineState.set(deviceId, online);
      if (onlineState.size > 100_000) onlineState.clear();
    } catch (err) {
      log.warn({ err, deviceId }, 'could not record online status');
    }
  }

  const preConnect: AedesOptions['preConnect'] = (client, packet, cb) => {
    const id = packet.clientId ?? '';
    if ((id === '' && !packet.clean) || id.length > limits.maxClientIdLength) {
      m.authFailed.inc({ reason: 'client_id' });
      if (packet.protocolVersion === 4 || packet.protocolVersion === 3) client.conn.write(connack(2));
      cb(new Error(id === '' ? 'empty client id with clean=false' : 'client id too long'), false);
      return;
    }
    // Keepalive bounds: 0 (none) or too long would let dead sessions linger; clamp rather than refuse
    // (MQTT 3.1.1 has no CONNACK code for it; aedes' keepaliveLimit answers a non-standard 6).
    const ka = packet.keepalive ?? 0;
    packet.keepalive = ka === 0 ? limits.keepaliveMaxSeconds : Math.min(Math.max(ka, limits.keepaliveMinSeconds), limits.keepaliveMaxSeconds);
    // Per source address: a flood of failing CONNECTs is refused before anything is looked up.
    const address = addressKey((client.conn as net.Socket).remoteAddress);
    if (!connectBuckets.take(address)) {
      m.authFailed.inc({ reason: 'rate_limited' });
      if (packet.protocolVersion === 4 || packet.protocolVersion === 3) client.conn.write(connack(3));
      cb(new Error('too many connection attempts from this address'), false);
      return;
    }
    addressOf.set(client, address);
    cb(null, true);
  };

  const authenticate: AedesOptions['authenticate'] = (client, username, password, cb) => {
    const fail = (rc: number, reason: string, message: string) => {
      m.authFailed.inc({ reason });
      log.info({ clientId: client.id, username, reason }, 'MQTT connect refused');
      cb(authError(rc, message) as Parameters<typeof cb>[0], null);
    };
    if (typeof username !== 'string' || !ID_RE.test(username) || client.id !== username) {
      // The client id must be the device id; checked before the (slow) secret hash.
      if (typeof username === 'string' && ID_RE.test(username) && client.id !== username) {
        return fail(2, 'client_id', 'client id must equal the device id');
      }
      return fail(4, 'bad_credentials', 'bad user name or password');
    }
    // Only a legacy record with a well-formed password costs a slow hash; those are bounded.
    let slow: boolean;
    try {
      slow = isSlowCheck(registry.credentials(username)?.secretHash, password ?? undefined);
    } catch (err) {
      log.error({ err, username }, 'authentication failed with an error');
      return fail(3, 'error', 'server unavailable');
    }
    if (slow && slowLogins >= limits.maxPendingLogins) return fail(3, 'busy', 'server busy');
    if (slow) slowLogins++;
    let released = !slow;
    const release = () => {
      if (!released) slowLogins--;
      released = true;
    };
    verifyDeviceSecret(registry, username, password ?? undefined)
      .then((creds) => {
        release();
        if (!creds) return fail(4, 'bad_credentials', 'bad user name or password');
        // Re-read after the check: a rotation or suspension meanwhile wins.
        const now = registry.credentials(username);
        if (!now || now.secretHash !== creds.secretHash) return fail(4, 'bad_credentials', 'bad user name or password');
        // Authenticated: this CONNECT does not count against its address.
        const address = addressOf.get(client);
        if (address !== undefined) connectBuckets.refund(address);
        if (now.status !== 'active' || now.facilityStatus !== 'active') {
          return fail(5, now.status !== 'active' ? 'device_suspended' : 'facility_suspended', 'not authorized');
        }
        const s: Session = { deviceId: now.deviceId, facilityId: now.facilityId, kicked: false, counted: false, secretHash: now.secretHash };
        sessions.set(client, s);
        let set = live.get(s.deviceId);
        if (!set) live.set(s.deviceId, (set = new Set()));
        set.add(client);
        client.conn.once('close', () => {
          const cur = live.get(s.deviceId);
          cur?.delete(client);
          if (cur && cur.size === 0) live.delete(s.deviceId);
        });
        cb(null, true);
      })
      .catch((err: unknown) => {
        // The check or the registry threw (e.g. the store is closing): refuse, never leave the CONNECT hanging.
        release();
        log.error({ err, username }, 'authentication failed with an error');
        fail(3, 'error', 'server unavailable');
      });
  };

  const authorizePublish: AedesOptions['authorizePublish'] = (client, packet, cb) => {
    if (packet.topic.startsWith('$SYS/')) return cb(new Error('$SYS/ topic is reserved'));
    const isWill = client === null || client.closed;
    const s = client ? sessions.get(client) : undefined;
    const kind = s ? publishTopicKind(s, packet.topic) : undefined;
    if (!s || !kind || (isWill && kind !== 'status')) {
      m.aclDenied.inc({ action: isWill ? 'will' : 'publish' });
      log.info({ deviceId: s?.deviceId, topic: packet.topic.slice(0, 200), will: isWill }, 'publish refused by ACL');
      const refuse = () => cb(new Error('not authorized to publish here'));
      // The device learns why on its feedback topic before the connection closes.
      if (s) return reject(s, 'invalid_topic', `${isWill ? 'will' : 'publish'} to a topic that is not the device's own: ${packet.topic.slice(0, 200)}`, packet.topic.slice(0, 512), refuse);
      return refuse();
    }
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    if (kind === 'status') {
      const online = isWill ? false : parseStatus(payload);
      if (online !== undefined) setOnline(s.deviceId, online);
      return cb(null);
    }
    // Readings: not retained (no copy kept in memory); held until durable, then PUBACK.
    (packet as PublishPacket).retain = false;
    pipeline.submit({ facilityId: s.facilityId, deviceId: s.deviceId }, payload).then(
      (res: IngestResult) => {
        cb(null);
        if (res.rejected.length > 0) feedback(s, feedbackOf(res));
      },
      (err: unknown) => {
        // Storage failed or the device is over its rate limit: no PUBACK. The error closes the
        // connection; the device redelivers after reconnecting.
        const fail = () => cb(err instanceof Error ? err : new Error(String(err)));
        if (isError(err, errors.RATE_LIMITED)) {
          m.dropped.inc({ reason: 'rate_limited' });
          feedback(s, [{ seq: null, reason: 'rate_limited', detail: (err as Error).message }], fail);
        } else {
          log.warn({ err, deviceId: s.deviceId }, 'readings not stored: closing the connection without PUBACK');
          fail();
        }
      },
    );
  };

  const authorizeSubscribe: AedesOptions['authorizeSubscribe'] = (client, sub: Subscription, cb) => {
    const s = sessions.get(client);
    if (s && maySubscribe(s, sub.topic)) return cb(null, sub);
    m.aclDenied.inc({ action: 'subscribe' });
    log.info({ deviceId: s?.deviceId, topic: sub.topic.slice(0, 200) }, 'subscribe refused by ACL');
    cb(null, null);
  };

  const aedes = new Aedes({
    preConnect,
    authenticate,
    authorizePublish,
    authorizeSubscribe,
    connectTimeout: limits.connectTimeoutMs,
    maxClientsIdLength: limits.maxClientIdLength,
    maxTopicLevels: limits.maxTopicLevels,
  });

  aedes.on('clientReady', (client) => {
    const s = sessions.get(client);
    if (!s) return;
    if (s.kicked) {
      client.close();
      return;
    }
    s.counted = true;
    m.connectedDevices.inc();
    setOnline(s.deviceId, true);
  });
  aedes.on('clientDisconnect', (client) => {
    const s = sessions.get(client);
    if (!s) return;
    if (s.counted) {
      s.counted = false;
      m.connectedDevices.dec();
    }
    // A takeover by a new session of the same device is not "offline".
    const current = (aedes as unknown as { clients: Record<string, Client> }).clients[s.deviceId];
    if (!current || current === client) setOnline(s.deviceId, false);
  });
  aedes.on('clientError', (client, err) => {
    const s = sessions.get(client);
    if (s && /too many levels/.test(err.message)) {
      m.dropped.inc({ reason: 'topic_levels' });
      reject(s, 'invalid_topic', `topic has more than ${limits.maxTopicLevels} levels`);
    }
    log.debug({ clientId: client.id, err: err.message }, 'client error');
  });
  aedes.on('connectionError', (client, err) => log.debug({ err: err.message }, 'connection error before CONNECT'));

  function onViolation(socket: Duplex, v: Violation, declared: number): void {
    m.dropped.inc({ reason: v });
    const client = (socket as unknown as { client?: Client }).client;
    const s = client ? sessions.get(client) : undefined;
    log.info({ deviceId: s?.deviceId, violation: v, declared, remote: (socket as Partial<net.Socket>).remoteAddress }, 'connection dropped by the packet guard');
    if (s) {
      if (v === 'topic_too_long') reject(s, 'invalid_topic', `topic of ${declared} bytes > ${limits.maxTopicBytes}`);
      else reject(s, 'payload_too_large', v === 'packet_too_large' ? `packet declares ${declared} bytes > ${limits.maxPacketBytes}` : 'malformed packet header');
    }
  }

  function handle(socket: Duplex): void {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    if (socket instanceof net.Socket) socket.setNoDelay(true);
    guardSocket(socket, limits, (v, declared) => onViolation(socket, v, declared));
    coalesceWrites(socket);
    aedes.handle(socket);
  }

  function listenOn(server: net.Server, port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        servers.push(server);
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  function kick(match: (s: Session) => boolean): number {
    let n = 0;
    for (const set of live.values()) {
      for (const client of set) {
        const s = sessions.get(client);
        if (s && match(s)) {
          s.kicked = true;
          client.close();
          n++;
        }
      }
    }
    return n;
  }

  /**
   * Closes live sessions whose registry row no longer allows them (device or facility not active,
   * device gone, secret changed). Cheap when nothing changed: SQLite's data_version tells whether
   * another connection (a gateway process) committed since the last poll; a full check still runs
   * every 15th poll. With a registry that announces changes (`onChange`: PostgreSQL's NOTIFY), a
   * change made by any process checks the sessions it concerns as soon as it reached this replica
   * (`only`: just that device's).
   */
  function checkSessions(force = false, only?: string): number {
    if (only === undefined) polls++;
    if (live.size === 0) return 0;
    let n = 0;
    try {
      const dv = registry.dataVersion?.();
      if (!force && dv !== undefined && dv === lastDataVersion && polls % 15 !== 0) return 0;
      if (only === undefined) lastDataVersion = dv;
    } catch (err) {
      log.warn({ err }, 'registry poll failed');
      return 0;
    }
    const entries = only === undefined ? live : new Map(live.has(only) ? [[only, live.get(only)!]] : []);
    for (const [deviceId, set] of entries) {
      let c;
      try {
        c = registry.credentials(deviceId);
      } catch (err) {
        log.warn({ err }, 'registry poll failed');
        return n;
      }
      for (const client of set) {
        const s = sessions.get(client);
        if (!s || s.kicked) continue;
        const why = !c
          ? 'device removed'
          : c.status !== 'active'
            ? `device ${c.status}`
            : c.facilityStatus !== 'active'
              ? `facility ${c.facilityStatus}`
              : c.secretHash !== s.secretHash
                ? 'secret rotated'
                : undefined;
        if (!why) continue;
        s.kicked = true;
        client.close();
        m.dropped.inc({ reason: 'registry_changed' });
        log.info({ deviceId, why }, 'session closed: registry changed');
        n++;
      }
    }
    return n;
  }

  function start(): Promise<void> {
    starting ??= aedes.listen().then(() => {
      listening = true;
      if (limits.registryPollMs > 0) {
        pollTimer = setInterval(() => checkSessions(), limits.registryPollMs);
        pollTimer.unref();
      }
      unsubscribe = registry.onChange?.((c) => {
        const n = c.kind === 'device' ? checkSessions(true, c.id) : checkSessions(true);
        if (n > 0) log.debug({ change: c, closed: n }, 'registry change notice closed sessions');
      });
    });
    return starting;
  }

  return {
    aedes,
    checkSessions,
    start,
    handle,
    async listen(opts) {
      const plain = opts.plain ?? true;
      if (!plain && !opts.tls) throw errors.CONFIG_INVALID('the MQTT broker needs a plain or a TLS listener');
      await start();
      const host = opts.host ?? '127.0.0.1';
      const port = plain ? await listenOn(net.createServer({ noDelay: true }, handle), opts.port, host) : undefined;
      let tlsPort: number | undefined;
      if (opts.tls) {
        const server = tls.createServer({ cert: opts.tls.cert, key: opts.tls.key }, (socket) => handle(socket));
        tlsPort = await listenOn(server, opts.tls.port, host);
      }
      log.info({ port, tlsPort, host }, 'MQTT broker listening');
      return { port, tlsPort };
    },
    disconnectDevice(deviceId) {
      const set = live.get(deviceId);
      if (!set) return 0;
      return kick((s) => s.deviceId === deviceId);
    },
    disconnectFacility(facilityId) {
      return kick((s) => s.facilityId === facilityId);
    },
    ping() {
      return listening && !aedes.closed;
    },
    async close() {
      listening = false;
      if (pollTimer) clearInterval(pollTimer);
      pollTimer = undefined;
      unsubscribe?.();
      unsubscribe = undefined;
      const closing = servers.map((s) => new Promise<void>((r) => s.close(() => r())));
      await new Promise<void>((r) => aedes.close(() => r()));
      for (const s of sockets) s.destroy();
      await Promise.all(closing);
      m.connectedDevices.set(0);
    },
  };
}
