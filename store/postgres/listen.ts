/**
 * One LISTEN connection per process on channel `mrv_registry` (announced by the triggers of
 * store/postgres/schema.ts at each commit that changes the registry or the API keys), shared by the
 * in-process replicas (store/postgres/registry.ts, keys.ts).
 *
 * A dedicated pg.Client, not a pooled one (a pool may close an idle client, and LISTEN belongs to one
 * session). When it fails or ends, it is reopened every `reconnectMs` until it works; after each
 * (re)connect, once LISTEN is in force, every subscriber's `resync` runs (a full reload: changes
 * committed while the connection was down were announced to nobody). Until then the replicas serve
 * the last state they had.
 */
import pg from 'pg';
import { silentLogger, type Logger } from '../../domain/logger.ts';

export const REGISTRY_CHANNEL = 'mrv_registry';

/** A payload of the channel (see the trigger in store/postgres/schema.ts). */
export type RegistryNotice =
  | { t: 'f'; id: string }
  | { t: 'd'; id: string }
  | { t: 'o'; id: string; on: boolean; at: number | null }
  | { t: 'k'; id: string };

export interface NoticeSubscriber {
  notice(n: RegistryNotice): void;
  /** Everything may have changed: reload (after a connect, LISTEN already in force). */
  resync(): Promise<void>;
}

export interface RegistryListener {
  add(s: NoticeSubscriber): void;
  /** Connects and runs LISTEN (rejects when the first attempt fails). */
  start(): Promise<void>;
  /** Whether the LISTEN connection is up now. */
  connected(): boolean;
  close(): Promise<void>;
}

function parse(payload: string | undefined): RegistryNotice | undefined {
  if (!payload) return undefined;
  try {
    const n = JSON.parse(payload) as RegistryNotice;
    if (typeof n?.id !== 'string' || !['f', 'd', 'o', 'k'].includes(n.t)) return undefined;
    return n;
  } catch {
    return undefined;
  }
}

export function createRegistryListener(connectionString: string, opts: { logger?: Logger; reconnectMs?: number } = {}): RegistryListener {
  const logger = opts.logger ?? silentLogger;
  const reconnectMs = opts.reconnectMs ?? 1000;
  const subs: NoticeSubscriber[] = [];
  let client: pg.Client | undefined;
  let up = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;

  async function connect(): Promise<void> {
    const c = new pg.Client({ connectionString, application_name: 'mrv-listen' });
    c.on('error', (err) => {
      logger.warn({ err }, 'registry LISTEN connection failed');
      lost(c);
    });
    c.on('end', () => lost(c));
    c.on('notification', (msg) => {
      if (msg.channel !== REGISTRY_CHANNEL) return;
      const n = parse(msg.payload);
      if (!n) return;
      for (const s of subs) s.notice(n);
    });
    await c.connect();
    try {
      await c.query(`LISTEN ${REGISTRY_CHANNEL}`);
    } catch (err) {
      await c.end().catch(() => undefined);
      throw err;
    }
    if (closed) {
      await c.end().catch(() => undefined);
      return;
    }
    client = c;
    up = true;
    try {
      for (const s of subs) await s.resync();
    } catch (err) {
      lost(c);
      throw err;
    }
  }

  function lost(c: pg.Client): void {
    if (client !== c) return;
    client = undefined;
    up = false;
    c.end().catch(() => undefined);
    schedule();
  }

  function schedule(): void {
    if (closed || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      connect().catch((err: unknown) => {
        logger.warn({ err }, 'registry LISTEN reconnect failed; retrying');
        schedule();
      });
    }, reconnectMs);
    timer.unref();
  }

  return {
    add(s) {
      subs.push(s);
    },
    start: connect,
    connected: () => up,
    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      const c = client;
      client = undefined;
      up = false;
      if (c) await c.end().catch(() => undefined);
    },
  };
}
