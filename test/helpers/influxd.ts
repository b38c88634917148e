/**
 * A real InfluxDB 1.x server (Debian's influxd) for a test; the server code lives in cluster/influxd.ts
 * (`npm run start:cluster` starts the same server). Tests skip with `influxdMissing()`'s reason, or
 * fail when CI is set (see `requireBinary` in require.ts).
 */
import type { Test } from 'tap';
import { influxdMissing } from '../../cluster/influxd.ts';
import { requireBinary } from './require.ts';

export { INFLUXD_BIN, influxdMissing, startInfluxd, type Influxd, type InfluxResponse } from '../../cluster/influxd.ts';
export { freePort } from '../../cluster/servers.ts';

/** Returns true when the test can go on; otherwise skips it with the reason, or fails it under CI. */
export function requireInfluxd(t: Test): boolean {
  return requireBinary(t, influxdMissing());
}

