/**
 * SPEC "Device signatures" at ingest, end to end over real MQTT sockets: a device registered with a
 * public key must sign every reading; its signed readings are stored with sig, prev and the value and
 * unit as sent (so the canonical line can be rebuilt from the store); unsigned, wrong-key and tampered
 * readings are rejected `bad_signature` (rejections log, metric, feedback topic) and the connection
 * stays up; a device without a key is unchanged. The verifier is the real worker-thread pool.
 */
import t from 'tap';
import { bundleReading, toReading } from '../../audit/bundle.ts';
import { createVerifier } from '../../broker/verify-pool.ts';
import { canonicalLine, generateDeviceKey, lineHash, readingLine, signLine, verifyLine } from '../../domain/signature.ts';
import { connect, makeFleet, metric, startBroker, topic } from './helpers.ts';
import { poll } from '../helpers/eventually.ts';

const feedbackTopic = (f: string, d: string) => `facilities/${f}/devices/${d}/feedback`;
type Item = { seq: number | null; reason: string; detail: string };

const T0 = Date.now() - 2 * 3_600_000;
const tsOf = (seq: number) => T0 + seq * 1000;

/** A signed reading as a device sends it: `value` is the JSON number text exactly as in the payload. */
function signed(deviceId: string, seed: string, seq: number, value: string, unit: string, prev: string, opts: { signValue?: string } = {}): { text: string; line: string } {
  const line = canonicalLine({ deviceId, seq, ts: tsOf(seq), metric: 'electricity_import', value: opts.signValue ?? value, unit, reset: false, prev });
  const text = `{"seq":${seq},"ts":${tsOf(seq)},"metric":"electricity_import","value":${value},"unit":"${unit}","prev":"${prev}","sig":"${signLine(seed, line)}"}`;
  return { text, line };
}

function unsigned(seq: number, value: string): string {
  return `{"seq":${seq},"ts":${tsOf(seq)},"metric":"electricity_import","value":${value},"unit":"kWh"}`;
}

t.test('a keyed device: signed readings stored with their signature, bad ones refused bad_signature, connection kept', async (t) => {
  const fleet = makeFleet(t);
  const key = generateDeviceKey();
  const other = generateDeviceKey();
  // Registered as base64: the registry keeps the canonical hex.
  fleet.stores.registry.updateDevice('d1', { publicKey: Buffer.from(key.publicKey, 'hex').toString('base64') });
  t.equal(fleet.stores.registry.getDevice('d1')?.publicKey, key.publicKey, 'the key is stored normalised to hex');
  const verifier = createVerifier({ workers: 1, inlineBelow: 1 }); // every batch through the worker
  t.teardown(() => verifier.close());
  const { port, metrics } = await startBroker(t, fleet, { pipeline: { verifier } });

  const d1 = await connect(t, port, 'd1', fleet.passwords.d1);
  const feedback: Item[][] = [];
  d1.on('message', (tp, payload) => {
    if (tp === feedbackTopic('F1', 'd1')) feedback.push(JSON.parse(payload.toString()) as Item[]);
  });
  await d1.subscribeAsync(feedbackTopic('F1', 'd1'), { qos: 1 });

  // seq 1 in Wh with a trailing zero (value and unit as sent are what is signed), seq 2 chained to it.
  const r1 = signed('d1', key.privateKey, 1, '1000500.0', 'Wh', '');
  const r2 = signed('d1', key.privateKey, 2, '1001', 'kWh', lineHash(r1.line));
  await d1.publishAsync(topic('F1', 'd1'), `[${r1.text},${r2.text}]`, { qos: 1 });
  const s1 = await fleet.stores.readings.get('d1', 1);
  const s2 = await fleet.stores.readings.get('d1', 2);
  t.match(s1, { value: '1000.5', unit: 'kWh', sig: /^[A-Za-z0-9+/]{86}==$/, prev: '', sentValue: '1000500.0', sentUnit: 'Wh' }, 'stored normalised, with the signature and what was signed');
  t.match(s2, { value: '1001', prev: lineHash(r1.line) });
  t.notOk(s2 && 'sentValue' in s2, 'no sentValue when the value was sent as stored');
  t.equal(readingLine(s1!), r1.line, 'the canonical line is rebuilt from the store');
  t.ok(verifyLine(key.publicKey, readingLine(s2!)!, s2!.sig!), "the stored reading verifies with the device's key");
  // An audit bundle is built from stored readings: its readings still verify and chain.
  const b1 = toReading('F1', 'd1', bundleReading(s1!));
  const b2 = toReading('F1', 'd1', bundleReading(s2!));
  t.ok(verifyLine(key.publicKey, readingLine(b1)!, b1.sig!), 'a bundle reading made from the store verifies');
  t.equal(b2.prev, lineHash(readingLine(b1)!), 'and links to its predecessor');

  // Unsigned, another key's signature, a value changed after signing: each refused, the connection stays.
  await d1.publishAsync(topic('F1', 'd1'), unsigned(3, '1002'), { qos: 1 });
  await d1.publishAsync(topic('F1', 'd1'), signed('d1', other.privateKey, 4, '1003', 'kWh', '').text, { qos: 1 });
  await d1.publishAsync(topic('F1', 'd1'), signed('d1', key.privateKey, 5, '1999', 'kWh', '', { signValue: '1004' }).text, { qos: 1 });
  t.ok(await poll(() => feedback.length === 3), 'one feedback message per refused PUBLISH');
  t.match(feedback, [
    [{ seq: 3, reason: 'bad_signature', detail: /must carry sig/ }],
    [{ seq: 4, reason: 'bad_signature', detail: /does not verify/ }],
    [{ seq: 5, reason: 'bad_signature', detail: /does not verify/ }],
  ]);
  for (const seq of [3, 4, 5]) t.equal(await fleet.stores.readings.get('d1', seq), undefined, `seq ${seq} not stored`);
  t.ok(d1.connected, 'the connection stays up');
  t.equal(await metric(metrics, 'mrv_readings_rejected_total', { reason: 'bad_signature' }), 3, 'counted');
  const rows = fleet.stores.registry.listRejections('F1', 100).filter((r) => r.reason === 'bad_signature');
  t.equal(rows.reduce((n, r) => n + (r.count ?? 1), 0), 3, 'in the rejections log');
  t.match(rows[0], { deviceId: 'd1', payload: /"seq":3/ });

  // The same connection goes on: the next signed reading is stored; a redelivery of a stored one is a duplicate.
  const r6 = signed('d1', key.privateKey, 6, '1005', 'kWh', lineHash(r2.line));
  await d1.publishAsync(topic('F1', 'd1'), r6.text, { qos: 1 });
  t.match(await fleet.stores.readings.get('d1', 6), { value: '1005', prev: lineHash(r2.line) });
  const dupsBefore = await metric(metrics, 'mrv_readings_duplicate_total');
  await d1.publishAsync(topic('F1', 'd1'), r6.text, { qos: 1 });
  t.equal(await metric(metrics, 'mrv_readings_duplicate_total'), dupsBefore + 1, 'identical signed redelivery: a duplicate');
  t.equal(feedback.length, 3, 'and no rejection');
});

t.test('a rotated key applies from the next batch: the old key no longer verifies', async (t) => {
  const fleet = makeFleet(t);
  const oldKey = generateDeviceKey();
  const newKey = generateDeviceKey();
  fleet.stores.registry.updateDevice('d1', { publicKey: oldKey.publicKey });
  const { port } = await startBroker(t, fleet); // no verifier given: the pipeline verifies inline
  const d1 = await connect(t, port, 'd1', fleet.passwords.d1);
  await d1.publishAsync(topic('F1', 'd1'), signed('d1', oldKey.privateKey, 1, '10', 'kWh', '').text, { qos: 1 });
  t.ok(await fleet.stores.readings.get('d1', 1), 'signed with the registered key: stored');
  fleet.stores.registry.updateDevice('d1', { publicKey: newKey.publicKey });
  await d1.publishAsync(topic('F1', 'd1'), signed('d1', oldKey.privateKey, 2, '11', 'kWh', '').text, { qos: 1 });
  t.equal(await fleet.stores.readings.get('d1', 2), undefined, 'old key after rotation: refused');
  await d1.publishAsync(topic('F1', 'd1'), signed('d1', newKey.privateKey, 3, '12', 'kWh', '').text, { qos: 1 });
  t.ok(await fleet.stores.readings.get('d1', 3), 'new key (a new chain, prev empty): stored');
  t.equal(fleet.stores.registry.listRejections('F1', 10)[0]?.reason, 'bad_signature');
});

t.test('a device without a key is unchanged; a signature it sends is not kept', async (t) => {
  const fleet = makeFleet(t);
  const stray = generateDeviceKey();
  const verifier = createVerifier({ workers: 1, inlineBelow: 1 });
  t.teardown(() => verifier.close());
  const { port, metrics } = await startBroker(t, fleet, { pipeline: { verifier } });
  const d2 = await connect(t, port, 'd2', fleet.passwords.d2);
  await d2.publishAsync(topic('F1', 'd2'), unsigned(1, '500'), { qos: 1 });
  t.strictSame(
    await fleet.stores.readings.get('d2', 1),
    { facilityId: 'F1', deviceId: 'd2', seq: 1, ts: tsOf(1), metric: 'electricity_import', value: '500', unit: 'kWh', reset: false, receivedAt: (await fleet.stores.readings.get('d2', 1))!.receivedAt },
    'stored as before',
  );
  await d2.publishAsync(topic('F1', 'd2'), signed('d2', stray.privateKey, 2, '501', 'kWh', '').text, { qos: 1 });
  const s2 = await fleet.stores.readings.get('d2', 2);
  t.match(s2, { value: '501' }, 'a signed reading of an unkeyed device is stored');
  t.notOk(s2 && ('sig' in s2 || 'prev' in s2), 'without its unverifiable signature');
  t.equal(await metric(metrics, 'mrv_readings_rejected_total', { reason: 'bad_signature' }), 0);
});
