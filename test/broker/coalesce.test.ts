/**
 * broker/coalesce.ts over a real TCP socket pair: what is written in one tick goes to the socket as
 * one write, in order, callbacks fire once written, and end()/destroy() right after a write still
 * deliver it (a refusing CONNACK followed by aedes destroying the connection must arrive).
 */
import net from 'node:net';
import t, { type Test } from 'tap';
import { coalesceWrites } from '../../broker/coalesce.ts';
import { poll } from '../helpers/eventually.ts';

async function pair(t: Test): Promise<{ client: net.Socket; server: net.Socket; received: () => Buffer; ended: Promise<void> }> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  t.teardown(() => client.destroy());
  const server = await accepted;
  t.teardown(() => server.destroy());
  const chunks: Buffer[] = [];
  client.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((r) => client.once('close', () => r()));
  return { client, server, received: () => Buffer.concat(chunks), ended };
}

t.test('writes of one tick leave as one, in order, with their callbacks', async (t) => {
  const { server, received } = await pair(t);
  let underlying = 0;
  const original = server.write.bind(server);
  server.write = ((...args: Parameters<typeof original>) => (underlying++, original(...args))) as typeof server.write;
  coalesceWrites(server);
  let called = 0;
  let pushedBack = 0;
  const expected: Buffer[] = [];
  for (let i = 0; i < 300; i++) {
    const b = Buffer.from([0x40, 0x02, i >> 8, i & 0xff]);
    expected.push(b);
    if (!server.write(b, () => called++)) pushedBack++;
  }
  t.equal(pushedBack, 0, 'no back-pressure signalled on an idle socket');
  server.write('tail', 'utf8');
  expected.push(Buffer.from('tail'));
  t.equal(underlying, 0, 'nothing written synchronously');
  await new Promise((r) => setImmediate(r));
  t.equal(underlying, 1, 'one write for the whole tick');
  const want = Buffer.concat(expected);
  await poll(() => received().length >= want.length);
  t.ok(received().equals(want), 'the bytes arrive complete and in order');
  t.equal(called, 300, 'every callback called');
});

t.test('end() and destroy(err) right after a write still deliver it', async (t) => {
  {
    const { server, received, ended } = await pair(t);
    coalesceWrites(server);
    server.write(Buffer.from([0x20, 0x02, 0x00, 0x02]));
    server.end();
    await ended;
    t.same([...received()], [0x20, 0x02, 0x00, 0x02], 'end: CONNACK arrives before EOF');
  }
  {
    const { server, received, ended } = await pair(t);
    coalesceWrites(server);
    server.on('error', () => undefined);
    server.write(Buffer.from([0x20, 0x02, 0x00, 0x05]));
    server.destroy(new Error('refused'));
    await ended;
    t.same([...received()], [0x20, 0x02, 0x00, 0x05], 'destroy(err): CONNACK arrives, as without coalescing');
  }
});
