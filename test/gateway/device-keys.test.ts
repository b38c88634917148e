/**
 * Device public keys through the API (SPEC "HTTP gateway", "Device signatures"): `publicKey` at
 * registration and by PATCH (regulator/admin only), shown by GET in its canonical hex form; a key
 * that is not 32 bytes of hex or base64, or not an Ed25519 point, is a 400 with a clear message.
 */
import t from 'tap';
import { generateDeviceKey } from '../../domain/signature.ts';
import { startGateway } from './harness.ts';

t.test('publicKey: register, show, rotate; bad keys refused; facility keys may not set it', async (t) => {
  const h = await startGateway(t);
  const k1 = generateDeviceKey();
  const k2 = generateDeviceKey();
  const post = (body: unknown, role: 'regulator' | 'facA' = 'regulator') =>
    h.app.inject({ method: 'POST', url: '/v1/facilities/facA/devices', headers: h.auth(role), payload: body as Record<string, unknown> });
  const patch = (deviceId: string, body: unknown, role: 'regulator' | 'admin' | 'facA' = 'regulator') =>
    h.app.inject({ method: 'PATCH', url: `/v1/devices/${deviceId}`, headers: h.auth(role), payload: body as Record<string, unknown> });
  const list = async () => (await h.app.inject({ method: 'GET', url: '/v1/facilities/facA/devices', headers: h.auth('facA') })).json() as { items: { deviceId: string; publicKey?: string }[] };

  // Registered with a base64 key: stored and shown as 64 lowercase hex.
  const created = await post({ deviceId: 'm1', publicKey: Buffer.from(k1.publicKey, 'hex').toString('base64') });
  t.equal(created.statusCode, 201);
  t.equal((await list()).items.find((d) => d.deviceId === 'm1')?.publicKey, k1.publicKey, 'GET shows the normalised key');
  t.equal(h.registry.getDevice('m1')?.publicKey, k1.publicKey);

  // Without a key: none shown.
  t.equal((await post({ deviceId: 'm2' })).statusCode, 201);
  t.notOk('publicKey' in ((await list()).items.find((d) => d.deviceId === 'm2') ?? {}), 'a device without a key shows none');

  // Bad keys: 400 naming the field, nothing registered.
  for (const bad of ['abc', 'zz'.repeat(32), k1.publicKey + '00', Buffer.alloc(31).toString('base64')]) {
    const res = await post({ deviceId: 'm3', publicKey: bad });
    t.equal(res.statusCode, 400, `refused: ${bad.slice(0, 20)}`);
    t.match(res.json(), { error: { message: /publicKey must be an Ed25519 public key/ } });
  }
  t.equal(h.registry.getDevice('m3'), undefined, 'nothing registered');

  // Set (m2) and rotate (m1) by PATCH, hex upper case accepted and normalised.
  const set = await patch('m2', { publicKey: k2.publicKey.toUpperCase() });
  t.equal(set.statusCode, 200);
  t.equal(set.json().publicKey, k2.publicKey);
  const rotated = await patch('m1', { publicKey: k2.publicKey }, 'admin');
  t.equal(rotated.statusCode, 200);
  t.equal(h.registry.getDevice('m1')?.publicKey, k2.publicKey, 'rotated');
  const badPatch = await patch('m1', { publicKey: 'not-a-key' });
  t.equal(badPatch.statusCode, 400);
  t.match(badPatch.json(), { error: { message: /publicKey/ } });
  t.equal(h.registry.getDevice('m1')?.publicKey, k2.publicKey, 'unchanged by a refused patch');

  // A facility key may neither register a device with a key nor change one.
  t.equal((await patch('m1', { publicKey: k1.publicKey }, 'facA')).statusCode, 403);
  t.equal((await post({ deviceId: 'm4', publicKey: k1.publicKey }, 'facA')).statusCode, 403);
  t.equal(h.registry.getDevice('m1')?.publicKey, k2.publicKey);
});

t.test("the regulator's key goes on chain at once: registration, rotation, a failed write reported and retried by repeating", async (t) => {
  const h = await startGateway(t);
  const k1 = generateDeviceKey();
  const k2 = generateDeviceKey();
  const created = await h.app.inject({ method: 'POST', url: '/v1/facilities/facA/devices', headers: h.auth('regulator'), payload: { deviceId: 'm1', publicKey: k1.publicKey } });
  t.equal(created.statusCode, 201);
  t.same(created.json().chain, { synced: true });
  t.equal(await h.ledger.deviceKey('m1'), k1.publicKey, 'DeviceKeySet on chain at registration');
  const plain = await h.app.inject({ method: 'POST', url: '/v1/facilities/facA/devices', headers: h.auth('regulator'), payload: { deviceId: 'm2' } });
  t.notOk('chain' in plain.json(), 'no key, no chain write');
  t.same(await h.ledger.deviceKeys('m2'), []);

  const patch = (body: Record<string, unknown>) => h.app.inject({ method: 'PATCH', url: '/v1/devices/m1', headers: h.auth('regulator'), payload: body });
  const rotated = await patch({ publicKey: k2.publicKey });
  t.equal(rotated.statusCode, 200);
  t.same(rotated.json().chain, { synced: true });
  t.same(
    (await h.ledger.deviceKeys('m1')).map((e) => [e.publicKey, e.previousKey]),
    [
      [k1.publicKey, null],
      [k2.publicKey, k1.publicKey],
    ],
    'the rotation is recorded with the key it replaces',
  );
  const other = await patch({ capacity: '5' } as Record<string, unknown>);
  t.notOk('chain' in (other.json() as object), 'a patch without publicKey writes no key');

  // The chain refuses (the role revoked): the registry changes, the answer says the chain did not.
  await h.ledger.revokeRole('regulator', h.ledger.from); // the chain refuses the write (a pause does not stop a regulator's record)
  const failed = await patch({ publicKey: k1.publicKey });
  t.equal(failed.statusCode, 200);
  t.match(failed.json().chain, { synced: false, message: /not confirmed on-chain/ });
  t.equal(h.registry.getDevice('m1')?.publicKey, k1.publicKey);
  t.equal(await h.ledger.deviceKey('m1'), k2.publicKey, 'the chain still holds the previous key');
  await h.ledger.grantRole('regulator', h.ledger.from);
  const again = await patch({ publicKey: k1.publicKey });
  t.same(again.json().chain, { synced: true }, 'repeating the request records it');
  t.equal(await h.ledger.deviceKey('m1'), k1.publicKey);
});

t.test('a gateway without a chain says the key is not on chain', async (t) => {
  const h = await startGateway(t, { deps: { ledger: undefined } });
  const k1 = generateDeviceKey();
  const created = await h.app.inject({ method: 'POST', url: '/v1/facilities/facA/devices', headers: h.auth('regulator'), payload: { deviceId: 'm1', publicKey: k1.publicKey } });
  t.equal(created.statusCode, 201);
  t.same(created.json().chain, { synced: false, message: 'no chain configured in this process' });
  t.same(await h.ledger.deviceKeys('m1'), []);
});
