/** A decommissioned device is refused at CONNECT (CONNACK 5) like a suspended one, through the broker (in memory); it is final. */
import t from 'tap';
import { connect, makeFleet, refusedCode, startBroker } from './helpers.ts';

t.test('a decommissioned device cannot connect, and cannot be reactivated', async (t) => {
  const fleet = makeFleet(t);
  const { broker } = await startBroker(t, fleet, { inMemory: true });
  const c = await connect(t, broker, 'd1', fleet.passwords.d1);
  c.end(true);
  fleet.stores.registry.updateDevice('d1', { status: 'decommissioned', reason: 'meter removed from site' });
  t.equal(await refusedCode(connect(t, broker, 'd1', fleet.passwords.d1)), 5, 'CONNACK 5: not authorized');
  t.throws(() => fleet.stores.registry.updateDevice('d1', { status: 'active' }), { code: 'DEVICE_DECOMMISSIONED' });
  t.equal(await refusedCode(connect(t, broker, 'd1', fleet.passwords.d1)), 5, 'still refused');
  t.equal(await refusedCode(connect(t, broker, 'd2', fleet.passwords.d2)), 'connected', 'other devices are not affected');
});
