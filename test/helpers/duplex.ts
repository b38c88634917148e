/**
 * In-memory MQTT connections, as aedes' own tests make them (test/helper.js: a duplex pair handed to
 * `broker.handle`): no port, no kernel socket, no Nagle or scheduling delays. For protocol-level
 * tests (authentication, ACL, validation, feedback); what only a real socket shows (TLS, the packet
 * guard against a slow or oversized sender, keepalive, many connections) keeps a TCP test.
 */
import { Duplex } from 'node:stream';
import { MqttClient, type IClientOptions } from 'mqtt';

/**
 * Two connected streams: what one writes the other reads. Ending one ends the other's readable side;
 * destroying one closes the other (a dropped connection, as a broker refusing a client does).
 */
export function duplexPair(): [Duplex, Duplex] {
  const sides: Duplex[] = [];
  const peerOf = (i: number) => sides[1 - i];
  for (const i of [0, 1]) {
    sides.push(
      new Duplex({
        allowHalfOpen: false,
        read() {},
        write(chunk: Buffer, _encoding, cb) {
          const peer = peerOf(i);
          if (!peer.destroyed) peer.push(chunk);
          cb();
        },
        final(cb) {
          const peer = peerOf(i);
          if (!peer.destroyed) peer.push(null);
          cb();
        },
        destroy(err, cb) {
          const peer = peerOf(i);
          if (!peer.destroyed) peer.destroy();
          cb(err);
        },
      }),
    );
  }
  return [sides[0], sides[1]];
}

/** What serves a connection: our Broker, or an aedes instance. */
export interface ConnectionHandler {
  handle(conn: Duplex): unknown;
}

/**
 * An mqtt.js client whose every (re)connection is a fresh in-memory pair served by `server`. It starts
 * connecting at once, like `mqtt.connect`.
 */
export function inMemoryClient(server: ConnectionHandler, options: IClientOptions): MqttClient {
  return new MqttClient(() => {
    const [client, broker] = duplexPair();
    server.handle(broker);
    return client;
  }, options);
}
