// An auditor's independent check of one reading (see the README's auditor journey): picks a settled
// window of FACILITY through the API, picks a reading of that window, asks the gateway for its
// Merkle proof, checks the proof with @openzeppelin/merkle-tree alone, and compares the proof's root
// with the evidence root the chain itself recorded (the WindowSettled event of the settlement's
// transaction, read from the node, not from the gateway).
//
//   node examples/check-proof.mjs            # on the machine running npm start
//
// Environment: API (http://127.0.0.1:3000), API_KEY or API_KEY_FILE (else $DATA_DIR/admin-api-key),
// FACILITY (sim-f1), SETTLEMENT (an id; default the newest settlement with readings),
// RPC (http://127.0.0.1:$ANVIL_PORT, 8545), CONTRACT (else $DATA_DIR/chain/deployment.json), DATA_DIR (./data).
// Exit 0: the reading is in the evidence the chain committed to; 1 otherwise.
import fs from 'node:fs';
import path from 'node:path';
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import { ethers } from 'ethers';

const env = process.env;
const dataDir = env.DATA_DIR || 'data';
const api = (env.API || 'http://127.0.0.1:3000').replace(/\/$/, '');
const key = (env.API_KEY || fs.readFileSync(env.API_KEY_FILE || path.join(dataDir, 'admin-api-key'), 'utf8')).trim();
const facility = env.FACILITY || 'sim-f1';
const rpc = env.RPC || `http://127.0.0.1:${env.ANVIL_PORT || 8545}`;
const contract = env.CONTRACT || JSON.parse(fs.readFileSync(path.join(dataDir, 'chain', 'deployment.json'), 'utf8')).address;

async function get(route) {
  const res = await fetch(`${api}${route}`, { headers: { authorization: `Bearer ${key}` } });
  const body = await res.json();
  if (!res.ok) throw new Error(`GET ${route}: ${res.status} ${body.error?.code}: ${body.error?.message}`);
  return body;
}
function fail(why) {
  console.error(`NOT VERIFIED: ${why}`);
  process.exit(1);
}

// 1. a settlement and a reading it counted (the oldest reading of its window)
const settlements = (await get(`/v1/settlements?facilityId=${encodeURIComponent(facility)}`)).items
  .filter((s) => !env.SETTLEMENT || s.id === env.SETTLEMENT)
  .sort((a, b) => Date.parse(b.windowEnd) - Date.parse(a.windowEnd));
let settlement;
let reading;
for (const s of settlements) {
  const q = new URLSearchParams({ from: s.windowStart, to: s.windowEnd, limit: '1000' });
  const inWindow = (await get(`/v1/facilities/${encodeURIComponent(facility)}/readings?${q}`)).items.filter((r) => Date.parse(r.ts) < Date.parse(s.windowEnd));
  if (s.txHash && inWindow.length) {
    settlement = s;
    reading = inWindow[inWindow.length - 1]; // newest first: the last is the oldest
    break;
  }
}
if (!settlement) fail(`no settled window of ${facility} with readings yet (a first window settles about a window and a grace after registration)`);
console.log(`settlement ${settlement.id}: ${settlement.windowStart} .. ${settlement.windowEnd}, net ${settlement.netGrams} g, tx ${settlement.txHash}`);
console.log(`reading    ${reading.deviceId} seq ${reading.seq} at ${reading.ts}: ${reading.metric} ${reading.value} ${reading.unit}`);

// 2. its proof, checked with the Merkle library alone
const p = await get(`/v1/settlements/${encodeURIComponent(settlement.id)}/proof?deviceId=${encodeURIComponent(reading.deviceId)}&seq=${reading.seq}`);
if (!StandardMerkleTree.verify(p.root, p.leafEncoding, p.leaf, p.proof)) fail('the proof does not lead from the leaf to the root');
if (p.leaf[1] !== reading.deviceId || String(p.leaf[2]) !== String(reading.seq)) fail(`the proof's leaf is another reading: ${JSON.stringify(p.leaf)}`);
console.log(`proof      ${p.proof.length} hashes from the leaf ${JSON.stringify(p.leaf)} to the root ${p.root}`);

// 3. the root the chain recorded, read from the node
const provider = new ethers.JsonRpcProvider(rpc, undefined, { staticNetwork: true });
const ledger = new ethers.Interface(['event WindowSettled(bytes32 indexed facility, uint64 windowStart, int256 netGrams, uint256 minted, uint256 firstSerial, uint256 deficitAfter, bytes32 evidenceRoot)']);
const receipt = await provider.getTransactionReceipt(settlement.txHash);
if (!receipt) fail(`the chain at ${rpc} has no transaction ${settlement.txHash}`);
const event = receipt.logs
  .filter((l) => l.address.toLowerCase() === contract.toLowerCase())
  .map((l) => ledger.parseLog(l))
  .find((e) => e?.name === 'WindowSettled' && e.args.facility === ethers.id(facility) && Number(e.args.windowStart) * 1000 === Date.parse(settlement.windowStart));
provider.destroy();
if (!event) fail(`the transaction has no WindowSettled of ${facility} for that window from the ledger ${contract}`);
console.log(`chain      WindowSettled evidence root ${event.args.evidenceRoot}, net ${event.args.netGrams} g`);
if (event.args.evidenceRoot !== p.root) fail('the proof root is not the root the chain recorded');
console.log('VERIFIED: the reading is in the evidence the chain committed to');
