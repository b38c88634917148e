/** An in-process aedes broker on 127.0.0.1 that records what devices publish (simulator tests). */
import net from 'node:net';
import { Aedes, type AedesOptions } from 'aedes';

export interface Received {
  topic: string;
  payload: Buffer;
  clientId: string;
  at: number;
}

export interface TestBroker {
  port: number;
  aedes: Aedes;
  /** Every PUBLISH from a client, in arrival order (all brokers started with the same `log`). */
  log: Received[];
  close(): Promise<void>;
}

export async function startBroker(opts: { port?: number; log?: Received[]; aedes?: Partial<AedesOptions> } = {}): Promise<TestBroker> {
  const aedes = await Aedes.createBroker(opts.aedes ?? {});
  const log = opts.log ?? [];
  aedes.on('publish', (packet, client) => {
    if (client) log.push({ topic: packet.topic, payload: Buffer.from(packet.payload), clientId: client.id, at: Date.now() });
  });
  const server = net.createServer(aedes.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  let closed = false;
  return {
    port,
    aedes,
    log,
    async close() {
      if (closed) return;
      closed = true;
      // stop accepting first, so reconnecting clients cannot slip in, then drop the sessions
      const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await serverClosed;
    },
  };
}

/** Messages on readings topics, parsed; garbage (not JSON) is skipped. */
export function readingsOf(log: Received[], deviceId?: string): { deviceId: string; seq: number; payload: string; body: unknown }[] {
  const out: { deviceId: string; seq: number; payload: string; body: unknown }[] = [];
  for (const r of log) {
    const m = /^facilities\/[^/]+\/devices\/([^/]+)\/readings$/.exec(r.topic);
    if (!m || (deviceId && m[1] !== deviceId)) continue;
    let body: unknown;
    try {
      body = JSON.parse(r.payload.toString('utf8'));
    } catch {
      continue;
    }
    for (const el of Array.isArray(body) ? body : [body]) {
      const seq = (el as { seq?: unknown }).seq;
      if (typeof seq === 'number') out.push({ deviceId: m[1], seq, payload: r.payload.toString('utf8'), body: el });
    }
  }
  return out;
}
