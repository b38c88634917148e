/**
 * A TCP proxy in front of a real MQTT broker that reads both directions with mqtt-packet, for tests
 * that must see what a client acknowledges: per connection, the ids of the QoS 1 PUBLISHes the broker
 * delivered (in order, with the DUP flag) and the ids the client PUBACKed (in order). `holdUpstream`
 * stops forwarding the client's bytes to the broker (they are kept, and sent on release): the client
 * has acknowledged, the broker has not heard it yet.
 */
import net from 'node:net';
import mqttPacket from 'mqtt-packet';

export interface ProxiedConnection {
  /** The client id of its CONNECT. */
  clientId: string;
  /** QoS 1 PUBLISHes from the broker: packet id and DUP flag, in arrival order. */
  delivered: { messageId: number; dup: boolean }[];
  /** PUBACK packet ids the client sent, in order (held ones included). */
  acked: number[];
}

export interface MqttProxy {
  url: string;
  connections: ProxiedConnection[];
  /** PUBACKs from every client so far. */
  ackedTotal(): number;
  /** While true, the clients' bytes are held back from the broker. */
  holdUpstream: boolean;
  close(): Promise<void>;
}

export async function startMqttProxy(brokerPort: number): Promise<MqttProxy> {
  const sockets = new Set<net.Socket>();
  const held: { up: net.Socket; chunk: Buffer }[] = [];
  let hold = false;
  const connections: ProxiedConnection[] = [];
  const server = net.createServer((down) => {
    const up = net.connect(brokerPort, '127.0.0.1');
    sockets.add(down);
    sockets.add(up);
    const conn: ProxiedConnection = { clientId: '', delivered: [], acked: [] };
    connections.push(conn);
    const fromClient = mqttPacket.parser({ protocolVersion: 4 });
    const fromBroker = mqttPacket.parser({ protocolVersion: 4 });
    fromClient.on('packet', (p) => {
      if (p.cmd === 'connect') conn.clientId = p.clientId;
      if (p.cmd === 'puback' && p.messageId !== undefined) conn.acked.push(p.messageId);
    });
    fromBroker.on('packet', (p) => {
      if (p.cmd === 'publish' && p.qos === 1 && p.messageId !== undefined) conn.delivered.push({ messageId: p.messageId, dup: p.dup });
    });
    down.on('data', (chunk: Buffer) => {
      // Parsed as sent (a held PUBACK counts as sent by the client), forwarded unless held.
      fromClient.parse(chunk);
      if (hold) held.push({ up, chunk });
      else up.write(chunk);
    });
    up.on('data', (chunk: Buffer) => {
      fromBroker.parse(chunk);
      down.write(chunk);
    });
    const end = () => {
      down.destroy();
      up.destroy();
      sockets.delete(down);
      sockets.delete(up);
    };
    down.on('close', end);
    up.on('close', end);
    down.on('error', end);
    up.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    connections,
    ackedTotal: () => connections.reduce((n, c) => n + c.acked.length, 0),
    get holdUpstream() {
      return hold;
    },
    set holdUpstream(v: boolean) {
      hold = v;
      // Released bytes go to the broker in order; those of a closed connection are lost with it.
      if (!v) for (const h of held.splice(0)) if (!h.up.destroyed) h.up.write(h.chunk);
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
