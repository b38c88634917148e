/**
 * The consumer's acknowledgement window (broker/consumer-acks.ts) on its own: PUBACKs in arrival order
 * whatever order the messages finish in, QoS 0 messages keep their place without a PUBACK, admission
 * bounded by unacknowledged messages and bytes, and a lost connection acknowledges nothing of it.
 */
import t from 'tap';
import { AckWindow, type AckTicket } from '../../broker/consumer-acks.ts';

function setup(limits = { messages: 3, bytes: 100 }) {
  const sent: number[] = [];
  const w = new AckWindow((id) => sent.push(id), limits);
  const tickets = new Map<number, AckTicket>();
  const started: number[] = [];
  const dropped: number[] = [];
  const admit = (id: number | undefined, bytes = 10, key = id ?? -1) =>
    w.admit(
      id,
      bytes,
      (tk) => {
        started.push(key);
        tickets.set(key, tk);
      },
      () => dropped.push(key),
    );
  return { w, sent, tickets, started, dropped, admit };
}

t.test('PUBACKs go out in arrival order, each once', async (t) => {
  const { sent, tickets, admit } = setup({ messages: 10, bytes: 1000 });
  for (const id of [5, 6, 7, 8]) admit(id);
  tickets.get(7)!.done();
  tickets.get(6)!.done();
  t.same(sent, [], 'nothing before the first message is done');
  tickets.get(5)!.done();
  t.same(sent, [5, 6, 7], 'then everything done behind it, in order');
  tickets.get(5)!.done();
  tickets.get(8)!.done();
  t.same(sent, [5, 6, 7, 8], 'a second done() changes nothing');
});

t.test('a QoS 0 message keeps its place and sends nothing', async (t) => {
  const { sent, tickets, admit } = setup({ messages: 10, bytes: 1000 });
  admit(1);
  admit(undefined, 10, 100);
  admit(2);
  tickets.get(2)!.done();
  tickets.get(1)!.done();
  t.same(sent, [1], 'held behind the QoS 0 message');
  tickets.get(100)!.done();
  t.same(sent, [1, 2]);
});

t.test('admission waits while the window is full (messages or bytes), one message always fits an empty window', async (t) => {
  const { w, tickets, started, admit } = setup({ messages: 3, bytes: 100 });
  admit(1);
  admit(2);
  admit(3);
  admit(4);
  t.same(started, [1, 2, 3], 'the fourth waits: 3 unacknowledged');
  t.equal(w.unacked, 3);
  tickets.get(2)!.done();
  t.same(started, [1, 2, 3], 'done but not acknowledged (behind 1): still counted');
  tickets.get(1)!.done();
  t.same(started, [1, 2, 3, 4], 'acknowledged: the next one starts');

  const b = setup({ messages: 10, bytes: 100 });
  b.admit(1, 60);
  b.admit(2, 60);
  t.same(b.started, [1], 'bytes: 60 + 60 > 100, the second waits');
  b.tickets.get(1)!.done();
  t.same(b.started, [1, 2], 'and starts once the first is processed');
  const c = setup({ messages: 10, bytes: 100 });
  c.admit(1, 500);
  t.same(c.started, [1], 'a message larger than the limit still fits an empty window');
});

t.test('a lost connection: nothing received on it is acknowledged, waiting messages are dropped', async (t) => {
  const { w, sent, tickets, started, dropped, admit } = setup({ messages: 2, bytes: 1000 });
  admit(1);
  admit(2);
  admit(3);
  w.reset();
  t.same(dropped, [3], 'the waiting message is dropped (the broker redelivers it)');
  tickets.get(1)!.done();
  tickets.get(2)!.done();
  t.same(sent, [], 'messages of the lost connection are never acknowledged, even once stored');
  admit(1);
  tickets.get(1)!.done();
  t.same(sent, [1], 'the next connection acknowledges its own messages');
  t.same(started, [1, 2, 1]);
});

t.test('fail(): no PUBACK for it nor anything behind it, the window starts over', async (t) => {
  const { w, sent, tickets, admit } = setup({ messages: 10, bytes: 1000 });
  admit(1);
  admit(2);
  admit(3);
  tickets.get(1)!.done();
  t.same(sent, [1]);
  tickets.get(2)!.fail();
  tickets.get(3)!.done();
  t.same(sent, [1], 'neither the failed message nor the one after it');
  t.equal(w.unacked, 0, 'the window is empty for the next connection');
});
