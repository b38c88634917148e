/**
 * HTTP benchmark: autocannon req/s and p99 latency of the gateway's GET balance and GET readings,
 * next to a bare fastify hello-world route measured in the same run on the same machine.
 * Target: balance >= 0.5x hello-world req/s.
 *
 * The gateway runs with its full request path (API-key auth, per-key rate limit, security headers,
 * metrics, schema serialisation) on the real SQLite stores holding 2,000 readings, and the real
 * contracts client on Hardhat's in-process chain with the ledger deployed and one window settled.
 * Chain reads are cached 1 s per facility (chain state changes once per block). autocannon runs in a
 * separate process, so this process's CPU time per request is the server's alone (steadier than req/s
 * on a shared machine). `npx tsx bench/http.ts [--seconds N] [--connections C] [--rounds R]`.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { execFile } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import Fastify from 'fastify';
import { Registry as PromRegistry } from 'prom-client';
import { openDatabase } from '../store/sqlite/db.ts';
import { openSqliteStores } from '../store/sqlite/stores.ts';
import { silentLogger } from '../domain/logger.ts';
import type { Reading } from '../domain/reading.ts';
import { buildGateway } from '../gateway/app.ts';
import { createKeyStore } from '../gateway/keys.ts';
import { startHardhatChain } from '../contracts/client/chain.ts';
import { Ledger } from '../contracts/client/ledger.ts';

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p99: number; p50: number; average: number };
  non2xx: number;
  errors: number;
}

const AUTOCANNON = createRequire(import.meta.url).resolve('autocannon/autocannon.js');

/**
 * autocannon in its own process (its CLI, JSON output), so this process's CPU time is the server's
 * alone: CPU per request is a figure the machine's other load barely moves, unlike req/s.
 */
function autocannon(opts: { url: string; connections: number; duration: number; headers?: Record<string, string> }): Promise<AutocannonResult> {
  const args = [AUTOCANNON, '-j', '-c', String(opts.connections), '-d', String(opts.duration)];
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push('-H', `${k}=${v}`);
  args.push(opts.url);
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { maxBuffer: 16 * 1024 * 1024 }, (err, stdout) => {
      if (err) return reject(err);
      try {
        resolve(JSON.parse(stdout) as AutocannonResult);
      } catch (e) {
        reject(e);
      }
    });
  });
}

export interface HttpBenchRow {
  name: string;
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  ratio: number;
  /** Server CPU time per request (this process: user + system), microseconds. */
  cpuUsPerReq: number;
}

const OWNER = '0x' + 'a1'.repeat(20);

export async function benchHttp(opts: { log?: (line: string) => void; seconds?: number; connections?: number; rounds?: number; only?: string } = {}): Promise<{ rows: HttpBenchRow[]; target: string; met: boolean }> {
  const log = opts.log ?? ((line: string) => process.stdout.write(line + '\n'));
  const seconds = opts.seconds ?? 5;
  const rounds = opts.rounds ?? 3;
  const connections = opts.connections ?? 50;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mrv-bench-http-'));
  const closers: (() => Promise<unknown> | void)[] = [() => fs.rmSync(dir, { recursive: true, force: true })];
  try {
    // Bare fastify, same process, same machine.
    const hello = Fastify();
    hello.get('/hello', async () => ({ hello: 'world' }));
    closers.unshift(() => hello.close());
    const helloUrl = await hello.listen({ port: 0, host: '127.0.0.1' });

    const db = openDatabase(dir);
    closers.unshift(() => {
      db.close();
    });
    const { registry, readings } = openSqliteStores(db);
    registry.createFacility({ id: 'bench', name: 'Bench plant', owner: OWNER, baselineKgPerHour: '3600', gridFactorKgPerKwh: '0.5366', gasFactorKgPerM3: '2.162' });
    registry.createDevice('bench', 'meter-1', 'meter');
    registry.createDevice('bench', 'meter-2', 'meter');
    const t0 = Date.now() - 3_600_000;
    const rows: Reading[] = [];
    for (let i = 0; i < 2000; i++) {
      const deviceId = i % 2 ? 'meter-2' : 'meter-1';
      rows.push({ facilityId: 'bench', deviceId, seq: i, ts: t0 + i * 1000, metric: 'electricity_import', value: String(1000 + i / 10), unit: 'kWh', reset: false, receivedAt: t0 + i * 1000 });
    }
    await readings.commit(rows);

    const chain = await startHardhatChain();
    closers.unshift(() => chain.close());
    const ledger = await Ledger.deploy(chain.signers[0], { windowSeconds: 3600 });
    // The last hour that has ended (the ledger settles ended windows only), with a cap above the net.
    const first = Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3_600_000;
    await ledger.registerFacility('bench', OWNER, '360000', first);
    await ledger.settleBatch([{ facilityId: 'bench', windowStart: first, windowEnd: first + 3_600_000, netGrams: 123_456_789n, evidenceRoot: '0x' + '11'.repeat(32) }]);

    const app = await buildGateway({
      db,
      registry,
      readings,
      ledger,
      metrics: new PromRegistry(),
      logger: silentLogger,
      options: { rateLimitMax: 1e9, chainCacheMs: 1000 },
    });
    closers.unshift(() => app.close());
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    const key = createKeyStore(db).create('facility', 'bench').key;
    const headers = { authorization: `Bearer ${key}` };

    type Sample = { reqPerSec: number; p50Ms: number; p99Ms: number; non2xx: number; cpuUs: number };
    const once = async (url: string, h?: Record<string, string>): Promise<Sample> => {
      const cpu0 = process.cpuUsage();
      const r = await autocannon({ url, connections, duration: seconds, ...(h ? { headers: h } : {}) });
      const cpu = process.cpuUsage(cpu0);
      const n = Math.max(1, r.requests.total);
      return { reqPerSec: r.requests.average, p50Ms: r.latency.p50, p99Ms: r.latency.p99, non2xx: r.non2xx + r.errors, cpuUs: (cpu.user + cpu.system) / n };
    };
    const all: [string, string, Record<string, string> | undefined][] = [
      ['fastify hello-world', `${helloUrl}/hello`, undefined],
      ['GET /v1/facilities/{id}/balance', `${base}/v1/facilities/bench/balance`, headers],
      ['GET /v1/facilities/{id}/readings (100 items)', `${base}/v1/facilities/bench/readings?limit=100`, headers],
    ];
    const targets = all.filter(([name], i) => i === 0 || !opts.only || name.includes(opts.only));
    // Warm-up (JIT, caches), then `rounds` interleaved rounds: on a shared machine the load drifts, and
    // interleaving plus the median keeps the ratio fair.
    for (const [, url, h] of targets) await autocannon({ url, connections, duration: 1, ...(h ? { headers: h } : {}) });
    const samples: Sample[][] = targets.map(() => []);
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < targets.length; i++) samples[i].push(await once(targets[i][1], targets[i][2]));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const results: HttpBenchRow[] = targets.map(([name], i) => ({
      name,
      reqPerSec: median(samples[i].map((x) => x.reqPerSec)),
      p50Ms: median(samples[i].map((x) => x.p50Ms)),
      p99Ms: median(samples[i].map((x) => x.p99Ms)),
      non2xx: samples[i].reduce((n, x) => n + x.non2xx, 0),
      ratio: 1,
      cpuUsPerReq: median(samples[i].map((x) => x.cpuUs)),
    }));
    // Ratio per round (same load), then the median of those.
    for (let i = 0; i < targets.length; i++) results[i].ratio = median(samples[i].map((x, r) => x.reqPerSec / samples[0][r].reqPerSec));

    log(`${connections} connections, ${rounds} interleaved rounds of ${seconds} s per route (medians), autocannon in its own process`);
    log('route'.padEnd(46) + 'req/s'.padStart(10) + 'p50 ms'.padStart(9) + 'p99 ms'.padStart(9) + 'vs hello'.padStart(10) + 'CPU µs/req'.padStart(12) + 'non-2xx'.padStart(9));
    for (const r of results) {
      log(
        r.name.padEnd(46) +
          r.reqPerSec.toFixed(0).padStart(10) +
          r.p50Ms.toFixed(1).padStart(9) +
          r.p99Ms.toFixed(1).padStart(9) +
          `${r.ratio.toFixed(2)}x`.padStart(10) +
          r.cpuUsPerReq.toFixed(0).padStart(12) +
          String(r.non2xx).padStart(9),
      );
    }
    const met = results[1]?.ratio >= 0.5 && results.every((r) => r.non2xx === 0);
    log(`target balance >= 0.50x hello-world: ${met ? 'met' : 'NOT met'} (${results[1].ratio.toFixed(2)}x req/s; server CPU per request ${(results[0].cpuUsPerReq / results[1].cpuUsPerReq).toFixed(2)}x)`);
    return { rows: results, target: 'balance >= 0.5x hello-world req/s', met };
  } finally {
    for (const close of closers) await close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : undefined;
  };
  const seconds = arg('--seconds');
  const connections = arg('--connections');
  const rounds = arg('--rounds');
  await benchHttp({ ...(seconds ? { seconds } : {}), ...(connections ? { connections } : {}), ...(rounds ? { rounds } : {}) });
}
