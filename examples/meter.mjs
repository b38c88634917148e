// A factory's electricity meter, in a few lines of mqtt.js (see the README's factory journey):
// connects as the device, prints what the platform says on its feedback topic (why a reading was
// refused), and publishes its cumulative import register every EVERY_SECONDS until Ctrl-C.
//
//   FACILITY=plant-7 DEVICE=meter-1 DEVICE_PASSWORD='<password>' node examples/meter.mjs
//
// Settings come from the environment, not the command line (other users see command lines in `ps`):
//   MQTT_URL (mqtt://127.0.0.1:1883), FACILITY, DEVICE, DEVICE_PASSWORD, EVERY_SECONDS (10),
//   KWH_PER_HOUR (72: the register's growth), UNIT (kWh; try kwh to see a refusal), COUNT (0: no end).
// The seq is the current UNIX second and the register grows with time, so a restarted meter carries
// on where it left off without keeping state (a real meter keeps both in its own memory).
import mqtt from 'mqtt';

const env = process.env;
const url = env.MQTT_URL || 'mqtt://127.0.0.1:1883';
const { FACILITY: facility, DEVICE: device, DEVICE_PASSWORD: password } = env;
if (!facility || !device || !password) {
  console.error('set FACILITY, DEVICE and DEVICE_PASSWORD (the password the device registration answered)');
  process.exit(2);
}
const every = Number(env.EVERY_SECONDS || 10) * 1000;
const kwhPerSecond = Number(env.KWH_PER_HOUR || 72) / 3600;
const unit = env.UNIT || 'kWh';
const count = Number(env.COUNT || 0);
const topic = `facilities/${facility}/devices/${device}`;

// client id = username = device id; QoS 1: the broker acknowledges once the reading is stored
const client = mqtt.connect(url, { clientId: device, username: device, password, clean: false, reconnectPeriod: 5000 });
client.on('connect', () => {
  console.log(`connected to ${url} as ${device}`);
  client.subscribe(`${topic}/feedback`, { qos: 1 });
});
client.on('error', (err) => console.error(`MQTT: ${err.message}`));
client.on('offline', () => console.log('disconnected (suspended, wrong password, or the broker is down?); retrying every 5 s'));
client.on('message', (_t, payload) => {
  for (const f of JSON.parse(payload.toString())) console.log(`refused seq ${f.seq}: ${f.reason}: ${f.detail}`);
});

let sent = 0;
function publish() {
  const now = Date.now();
  const seq = Math.floor(now / 1000);
  const value = ((seq - 1_700_000_000) * kwhPerSecond).toFixed(3);
  const reading = { seq, ts: new Date(seq * 1000).toISOString(), metric: 'electricity_import', value: Number(value), unit };
  client.publish(`${topic}/readings`, JSON.stringify(reading), { qos: 1 }, (err) => {
    // the broker acknowledges a refused reading too (MQTT 3.1.1): the refusal comes on the feedback topic
    console.log(err ? `seq ${seq} not sent: ${err.message}` : `published seq ${seq}: ${value} ${unit} (acknowledged by the broker)`);
  });
  sent++;
  if (count > 0 && sent >= count) setTimeout(stop, 2000); // a moment for the feedback to arrive
}
const timer = setInterval(publish, every);
client.once('connect', publish);

function stop() {
  clearInterval(timer);
  client.end(false, () => process.exit(0));
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
