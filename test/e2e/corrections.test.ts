/**
 * Issue 12's corrections end to end on `npm start`'s composition (main.ts startStack: a real anvil with
 * CreditLedger, SQLite, our broker, the oracle on its cron, the gateway): a facility's meter publishes
 * over MQTT, windows settle and mint on chain; a regulator key voids, over HTTP, the readings of one
 * settled window. Asserted: 201 with the corrections the void caused; the void on chain (ReadingsVoided);
 * each correction settled on chain exactly once (CorrectionSettled; later oracle runs send nothing more);
 * `/v1/corrections/{id}/verify` matches; the facility's balance and deficit moved by the corrections'
 * deltas exactly (the owner having retired all but 100 g first: burned from its holdings, the rest
 * deficit); the corrected settlement lists its correction; a facility key's void is refused (403).
 */
import t from 'tap';
import mqtt from 'mqtt';
import { ethers } from 'ethers';
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import { loadArtifact } from '../../contracts/client/artifact.ts';
import { facilityKey } from '../../contracts/client/units.ts';
import { relayRetirement, signRetirement } from '../../gateway/cli/chain.ts';
import { ADMIN_KEY, api, start, tempDataDir, waitSettledThrough } from './helpers.ts';
import { eventually } from '../helpers/eventually.ts';

const FACILITY = 'corr-e2e';
const DEVICE = 'corr-meter';

interface ApiSettlement {
  id: string;
  windowStart: string;
  windowEnd: string;
  complete: boolean;
  netGrams: string;
  mintedGrams: string;
  corrections?: { id: string; seq: number; state: string; netGrams: string; deltaGrams: string }[];
}

interface ApiCorrection {
  id: string;
  settlementId: string;
  seq: number;
  facilityId: string;
  windowStart: string;
  state: string;
  voidIds: number[];
  deltaGrams: string;
  netGrams: string;
  prevNetGrams: string;
  mintedGrams: string | null;
  burnedGrams: string | null;
  deficitGrams: string | null;
  evidenceRoot: string;
  txHash: string | null;
}

interface Balance {
  balanceGrams: string;
  mintedGrams: string;
  burnedGrams: string;
  retiredGrams: string;
  deficitGrams: string;
}

async function send(url: string, key: string, method: 'POST' | 'PATCH', route: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${route}`, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

t.test('a regulator voids settled readings: corrections settled on chain once, verified, balance moved by their deltas', async (t) => {
  const stack = await start(t, tempDataDir(t));
  const post = (key: string, route: string, body: unknown) => send(stack.httpUrl, key, 'POST', route, body);

  // A facility (baseline 3,600 kg/h = 2,000 g a 2 s window) and its grid meter; a regulator's and the facility's API keys.
  const ownerWallet = ethers.Wallet.createRandom();
  const owner = ownerWallet.address;
  t.equal((await post(ADMIN_KEY, '/v1/facilities', { id: FACILITY, name: 'Corrected plant', owner, baselineKgPerHour: '3600' })).status, 201);
  const device = await post(ADMIN_KEY, `/v1/facilities/${FACILITY}/devices`, { deviceId: DEVICE, kind: 'grid' });
  t.equal(device.status, 201);
  const regulator = await post(ADMIN_KEY, '/v1/api-keys', { role: 'regulator' });
  const facilityKeyRes = await post(ADMIN_KEY, '/v1/api-keys', { role: 'facility', facilityId: FACILITY });
  t.equal(regulator.status, 201);
  t.equal(facilityKeyRes.status, 201);
  const REG = regulator.body.key as string;
  const FAC = facilityKeyRes.body.key as string;

  // The meter publishes its import register (0.01 kWh every 250 ms) over MQTT, each reading acknowledged.
  const client = await mqtt.connectAsync(stack.mqttUrl, { username: device.body.username, password: device.body.password, clientId: device.body.username, reconnectPeriod: 0 });
  t.teardown(() => client.endAsync(true));
  let seq = 0;
  let publishing = true;
  const loop = (async () => {
    while (publishing) {
      seq++;
      const value = (1000 + seq / 100).toFixed(2);
      await client.publishAsync(`facilities/${FACILITY}/devices/${DEVICE}/readings`, `{"seq":${seq},"ts":${Date.now()},"metric":"electricity_import","value":${value},"unit":"kWh"}`, { qos: 1 });
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  t.teardown(() => {
    publishing = false;
    return loop.catch(() => undefined);
  });

  // Until two consecutive complete windows have minted on chain: the first is the one to void.
  let target: ApiSettlement | undefined;
  await eventually(
    'two consecutive complete windows to mint',
    async () => {
      const { items } = await api<{ items: ApiSettlement[] }>(stack, `/v1/settlements?facilityId=${FACILITY}&limit=1000`);
      const list = [...items].sort((a, b) => Date.parse(a.windowStart) - Date.parse(b.windowStart));
      const ok = (s: ApiSettlement) => s.complete && BigInt(s.mintedGrams) > 0n;
      target = list.find((s, i) => ok(s) && list[i + 1] !== undefined && ok(list[i + 1]) && list[i + 1].windowStart === s.windowEnd);
      return target !== undefined;
    },
    { timeoutMs: 120_000, everyMs: 250 },
  );
  publishing = false;
  await loop;
  const lastTs = Date.now();
  // Every window with readings settled; the ones after are empty (incomplete, net 0): the balance stands still.
  await waitSettledThrough(stack, [FACILITY], lastTs);
  const w = target!;
  // The owner retires (through the relay: it has no ether) all but 100 g, so the corrections' take-back
  // is partly burned from its holdings and partly the facility's deficit.
  const holdings = await api<{ items: { id: string; facilityId: string; balanceGrams: string }[] }>(stack, `/v1/accounts/${owner}/holdings`);
  const held = holdings.items.filter((h) => h.facilityId === FACILITY && BigInt(h.balanceGrams) > 0n);
  t.ok(held.length > 0, 'the owner holds batches of the facility');
  const keep = 100n;
  const total = held.reduce((a, h) => a + BigInt(h.balanceGrams), 0n);
  t.ok(total > BigInt(w.netGrams) + keep, `the owner holds more than the window to void minted (${total} g)`);
  let left = total - keep;
  const parts = held.map((h) => {
    const take = BigInt(h.balanceGrams) < left ? BigInt(h.balanceGrams) : left;
    left -= take;
    return { batchId: BigInt(h.id), amount: take };
  }).filter((p) => p.amount > 0n);
  const provider = new ethers.JsonRpcProvider(stack.rpcUrl, undefined, { staticNetwork: true, cacheTimeout: -1 });
  t.teardown(() => provider.destroy());
  const signed = await signRetirement(ownerWallet.connect(provider), stack.contractAddress, { batchIds: parts.map((p) => p.batchId), amounts: parts.map((p) => p.amount), beneficiary: 'City of X', reason: 'scope 2' });
  t.match(await relayRetirement(stack.httpUrl, ADMIN_KEY, signed), { txHash: /^0x[0-9a-f]{64}$/ }, 'retired through the relay');
  const before = await api<Balance>(stack, `/v1/facilities/${FACILITY}/balance`);
  t.equal(before.balanceGrams, keep.toString(), 'the owner keeps 100 g');
  t.equal(before.deficitGrams, '0', 'no deficit yet');
  const body = { from: w.windowStart, to: w.windowEnd, reason: 'meter found faulty' };

  // A facility key cannot void its own meter's readings.
  const refused = await post(FAC, `/v1/devices/${DEVICE}/voids`, body);
  t.equal(refused.status, 403, "a facility key's void is refused");
  t.equal(refused.body.error.code, 'FORBIDDEN');

  // The regulator's void: 201 with the corrections it caused, the first being the voided window's.
  const voided = await post(REG, `/v1/devices/${DEVICE}/voids`, body);
  t.equal(voided.status, 201, JSON.stringify(voided.body));
  const made = voided.body.corrections as ApiCorrection[];
  t.ok(made.length >= 1, `the void caused corrections (${made.length})`);
  t.match(made[0], { settlementId: w.id, seq: 1, facilityId: FACILITY, prevNetGrams: w.netGrams, netGrams: '0', deltaGrams: `-${w.netGrams}` }, 'the voided window is recomputed without its readings: incomplete, net 0');
  const chainVoidId = voided.body.void.chainVoidId as number;
  t.type(chainVoidId, 'number', 'the void names its number on chain');

  // The void is on chain.
  const iface = new ethers.Interface(loadArtifact('CreditLedger').abi as ethers.InterfaceAbi);
  const logsOf = async (event: string) =>
    (await provider.getLogs({ address: stack.contractAddress, topics: [iface.getEvent(event)!.topicHash], fromBlock: 0, toBlock: 'latest' })).map((l) => ({
      args: iface.parseLog(l)!.args,
      transactionHash: l.transactionHash,
    }));
  const voidLogs = await logsOf('ReadingsVoided');
  t.equal(voidLogs.length, 1, 'one ReadingsVoided on chain');
  t.match(
    { id: Number(voidLogs[0].args.id), facility: voidLogs[0].args.facility, deviceId: voidLogs[0].args.deviceId, from: Number(voidLogs[0].args.from) * 1000, to: Number(voidLogs[0].args.to) * 1000, reason: voidLogs[0].args.reason },
    { id: chainVoidId, facility: facilityKey(FACILITY), deviceId: DEVICE, from: Date.parse(w.windowStart), to: Date.parse(w.windowEnd), reason: 'meter found faulty' },
  );

  // The oracle's next runs settle every correction on chain.
  let corrections: ApiCorrection[] = [];
  await eventually(
    'the corrections to be confirmed on chain',
    async () => {
      corrections = (await api<{ items: ApiCorrection[] }>(stack, `/v1/corrections?facilityId=${FACILITY}`)).items;
      return corrections.length > 0 && corrections.every((c) => c.state === 'confirmed');
    },
    { timeoutMs: 60_000, everyMs: 250 },
  );
  t.same(corrections.map((c) => c.id), made.map((c) => c.id), 'the corrections settled are the ones the void answered');
  const settledLogs = async () => (await logsOf('CorrectionSettled')).filter((l) => l.args.facility === facilityKey(FACILITY));
  const onChain = await settledLogs();
  t.equal(onChain.length, corrections.length, 'one CorrectionSettled per correction');
  for (const c of corrections) {
    const mine = onChain.filter((l) => Number(l.args.windowStart) * 1000 === Date.parse(c.windowStart) && Number(l.args.seq) === c.seq);
    t.equal(mine.length, 1, `${c.id}: settled on chain exactly once`);
    t.equal(String(mine[0]?.args.evidenceRoot).toLowerCase(), c.evidenceRoot.toLowerCase(), `${c.id}: with its evidence root`);
    t.equal(BigInt(mine[0]?.args.deltaGrams ?? 0n), BigInt(c.deltaGrams), `${c.id}: with its delta`);
    t.equal(Number(mine[0]?.args.voidId), chainVoidId, `${c.id}: authorised by the void`);
    t.equal(mine[0]?.transactionHash, c.txHash, `${c.id}: its recorded tx hash is the event's`);
  }

  // Later oracle runs (two more windows settled) send nothing more.
  const settledNow = (await api<{ items: ApiSettlement[] }>(stack, `/v1/settlements?facilityId=${FACILITY}&limit=1000`)).items.length;
  await eventually(
    'two more oracle runs that settled a window',
    async () => (await api<{ items: ApiSettlement[] }>(stack, `/v1/settlements?facilityId=${FACILITY}&limit=1000`)).items.length >= settledNow + 2,
    { timeoutMs: 60_000, everyMs: 250 },
  );
  t.equal((await settledLogs()).length, onChain.length, 'no correction was sent again');
  t.equal((await logsOf('CorrectionSkipped')).length, 0, 'nor retried into a skip');
  t.same((await api<{ items: ApiCorrection[] }>(stack, `/v1/corrections?facilityId=${FACILITY}`)).items.map((c) => c.id), made.map((c) => c.id), 'and none was added');

  // Each correction verifies against the chain.
  for (const c of corrections) {
    const v = await api(stack, `/v1/corrections/${c.id}/verify`);
    t.equal(v.match, true, `${c.id} verifies: ${JSON.stringify(v)}`);
    t.equal(v.onChain.deltaGrams, c.deltaGrams);
  }

  // A voided reading is proven left out of the first correction's evidence, whose root is the chain's.
  const readings = await api<{ items: { seq: number; voided?: boolean }[] }>(stack, `/v1/facilities/${FACILITY}/readings?deviceId=${DEVICE}&from=${encodeURIComponent(w.windowStart)}&to=${encodeURIComponent(w.windowEnd)}`);
  const voidedSeq = readings.items.find((r) => r.voided)?.seq;
  t.ok(voidedSeq !== undefined, 'the readings API flags the voided readings');
  const proof = await api(stack, `/v1/corrections/${corrections[0].id}/proof?deviceId=${DEVICE}&seq=${voidedSeq}`);
  t.equal(proof.leaf[0], 'voided');
  const firstOnChain = onChain.find((l) => Number(l.args.windowStart) * 1000 === Date.parse(corrections[0].windowStart) && Number(l.args.seq) === corrections[0].seq);
  t.equal(String(firstOnChain?.args.evidenceRoot).toLowerCase(), proof.root.toLowerCase(), "the proof's root is the chain's");
  t.ok(StandardMerkleTree.verify(proof.root, proof.leafEncoding, proof.leaf, proof.proof), 'and the proof checks');

  // The balance and the deficit moved by the corrections' deltas exactly.
  const after = await api<Balance>(stack, `/v1/facilities/${FACILITY}/balance`);
  const delta = corrections.reduce((a, c) => a + BigInt(c.deltaGrams), 0n);
  t.ok(delta < 0n, `the corrections take credits back (${delta} g)`);
  const g = (b: Balance, k: keyof Balance) => BigInt(b[k]);
  t.equal(g(after, 'balanceGrams') - g(after, 'deficitGrams') - (g(before, 'balanceGrams') - g(before, 'deficitGrams')), delta, 'balance - deficit moved by the sum of the deltas');
  t.equal(g(after, 'mintedGrams') - g(after, 'burnedGrams') - g(after, 'deficitGrams') - (g(before, 'mintedGrams') - g(before, 'burnedGrams') - g(before, 'deficitGrams')), delta, 'minted - burned - deficit likewise');
  const burned = corrections.reduce((a, c) => a + BigInt(c.burnedGrams ?? '0'), 0n);
  const minted = corrections.reduce((a, c) => a + BigInt(c.mintedGrams ?? '0'), 0n);
  t.equal(g(after, 'burnedGrams') - g(before, 'burnedGrams'), burned, "the burns are the corrections' own");
  t.equal(g(after, 'mintedGrams') - g(before, 'mintedGrams'), minted, 'and so are the mints');
  t.equal(g(after, 'balanceGrams'), 0n, 'what the owner held was burned');
  t.equal(burned, keep, 'the burns took what was held');
  t.equal(g(after, 'deficitGrams'), -delta - keep, 'the rest is the deficit');
  t.equal(BigInt(corrections[corrections.length - 1].deficitGrams ?? '-1'), -delta - keep, "the last correction's deficit is the facility's");
  t.equal(after.retiredGrams, before.retiredGrams, 'retired credits are not touched');

  // The corrected settlement lists its correction; it stays as settled.
  const s = await api<ApiSettlement>(stack, `/v1/settlements/${w.id}`);
  t.equal(s.netGrams, w.netGrams, 'the original settlement stays as settled');
  t.match(s.corrections, [{ id: made[0].id, seq: 1, state: 'confirmed', netGrams: '0', deltaGrams: `-${w.netGrams}` }]);
  t.equal(s.corrections?.length, 1);
});
