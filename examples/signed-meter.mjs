// A meter that signs its readings (SPEC "Device signatures"), with node:crypto alone: it keeps an
// Ed25519 key in a file, prints the public key to register (`publicKey` at device registration or
// by PATCH), and publishes each reading with `prev` (the hash of its previous canonical line) and
// `sig` (the signature over this one). Run it like examples/meter.mjs:
//
//   FACILITY=plant-7 DEVICE=meter-1 DEVICE_PASSWORD='<password>' node examples/signed-meter.mjs
//
// KEY_FILE (default ./meter-1.ed25519) holds the private key (PKCS#8 PEM, 0600); COUNT=3 sends three
// readings and stops; PRINT_KEY=1 only prints the public key.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import fs from 'node:fs';
import mqtt from 'mqtt';

const env = process.env;
const { FACILITY: facility, DEVICE: device, DEVICE_PASSWORD: password } = env;
const keyFile = env.KEY_FILE || `./${device || 'meter'}.ed25519`;

// 1. A key, made once. The public key the platform wants is the raw 32 bytes (hex or base64).
if (!fs.existsSync(keyFile)) {
  const { privateKey } = generateKeyPairSync('ed25519');
  fs.writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
}
const privateKey = createPrivateKey(fs.readFileSync(keyFile));
const publicKey = createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(-32).toString('hex');
console.log(`publicKey ${publicKey}`);
if (env.PRINT_KEY) process.exit(0);
if (!facility || !device || !password) {
  console.error('set FACILITY, DEVICE and DEVICE_PASSWORD (and register the publicKey above for the device)');
  process.exit(2);
}

// 2. The canonical line, its hash (the next reading's prev) and the signature.
// A real meter keeps prev (and its seq) across restarts; this one starts a new chain ('') when started.
let prev = ''; // empty for the first reading after the key was set
function signed(reading) {
  const ts = typeof reading.ts === 'number' ? reading.ts : Date.parse(reading.ts);
  const line = [device, reading.seq, ts, reading.metric, JSON.stringify(reading.value), reading.unit, reading.reset ? 1 : 0, prev].join('|');
  const out = { ...reading, prev, sig: sign(null, Buffer.from(line), privateKey).toString('base64') };
  prev = createHash('sha256').update(line).digest('hex');
  return out;
}

// 3. Publish as any meter does (QoS 1; refusals such as bad_signature come on the feedback topic).
const topic = `facilities/${facility}/devices/${device}`;
const client = mqtt.connect(env.MQTT_URL || 'mqtt://127.0.0.1:1883', { clientId: device, username: device, password, clean: false });
client.on('connect', () => client.subscribe(`${topic}/feedback`, { qos: 1 }));
client.on('message', (_t, payload) => {
  for (const f of JSON.parse(payload.toString())) console.log(`refused seq ${f.seq}: ${f.reason}: ${f.detail}`);
});
const count = Number(env.COUNT || 0);
let sent = 0;
let lastSeq = 0;
function publish() {
  const seq = Math.max(lastSeq + 1, Math.floor(Date.now() / 1000)); // increases, even twice in a second
  lastSeq = seq;
  const reading = signed({ seq, ts: new Date(seq * 1000).toISOString(), metric: 'electricity_import', value: Number(((seq - 1_700_000_000) * 0.02).toFixed(3)), unit: 'kWh' });
  client.publish(`${topic}/readings`, JSON.stringify(reading), { qos: 1 }, (err) => console.log(err ? `seq ${seq}: ${err.message}` : `published signed seq ${seq}`));
  if (count > 0 && ++sent >= count) setTimeout(() => client.end(false, () => process.exit(0)), 2000);
}
const timer = setInterval(publish, Number(env.EVERY_SECONDS || 10) * 1000);
client.once('connect', publish);
process.on('SIGINT', () => {
  clearInterval(timer);
  client.end(false, () => process.exit(0));
});
