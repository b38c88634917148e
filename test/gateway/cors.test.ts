/**
 * No cross-origin reads: the API sends no CORS headers, so a web page on another origin cannot read an
 * API response made with a user's key (the browser refuses the preflight that an Authorization header
 * needs, and any response without `Access-Control-Allow-Origin`).
 * Over a real socket: simple and credentialed cross-origin requests and preflights, on API, ops and
 * dashboard routes, answered and refused alike; then a real page in headless Chromium served from
 * another origin tries to read `/v1/facilities` with a valid admin key (skipped without chromium,
 * a failure under CI).
 */
import http from 'node:http';
import type net from 'node:net';
import t from 'tap';
import { chromium } from 'playwright-core';
import { startGateway } from './harness.ts';
import { CHROMIUM, missing, skipUnless } from '../helpers/require.ts';

const EVIL = 'https://evil.example';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
}

function request(url: string, method: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

function corsHeaders(h: http.IncomingHttpHeaders): string[] {
  return Object.keys(h).filter((k) => k.startsWith('access-control-'));
}

t.test('the API sends no CORS headers to a cross-origin request', async (t) => {
  const h = await startGateway(t);
  const base = await h.app.listen({ port: 0, host: '127.0.0.1' });
  const admin = h.auth('admin').authorization;

  const cases: [string, string, Record<string, string>, number][] = [
    ['GET with a valid key', '/v1/facilities', { authorization: admin }, 200],
    ['GET of a facility balance with a valid key', '/v1/facilities/facA/balance', { authorization: admin }, 200],
    ['GET without a key', '/v1/facilities', {}, 401],
    ['GET of the OpenAPI document', '/openapi.json', {}, 200],
    ['GET of health', '/health', {}, 200],
    ['GET of the dashboard', '/', {}, 200],
    ['GET of an unknown path', '/nope', {}, 404],
  ];
  for (const [name, path, extra, status] of cases) {
    const res = await request(base + path, 'GET', { origin: EVIL, ...extra });
    t.equal(res.status, status, `${name}: answered ${status}`);
    t.same(corsHeaders(res.headers), [], `${name}: no Access-Control-* header`);
  }

  // The preflight a browser sends before a cross-origin request with an Authorization header.
  for (const [path, method] of [
    ['/v1/facilities', 'GET'],
    ['/v1/facilities', 'POST'],
    ['/v1/retirements', 'POST'],
    ['/v1/api-keys', 'POST'],
  ]) {
    const res = await request(base + path, 'OPTIONS', {
      origin: EVIL,
      'access-control-request-method': method,
      'access-control-request-headers': 'authorization, content-type',
    });
    t.same(corsHeaders(res.headers), [], `preflight OPTIONS ${path} (${method}): no Access-Control-* header`);
    t.notOk(res.headers['access-control-allow-origin'], `preflight OPTIONS ${path}: Access-Control-Allow-Origin absent (status ${res.status})`);
  }
  // Same-origin requests are unaffected (no Origin header, no CORS needed).
  t.equal((await request(base + '/v1/facilities', 'GET', { authorization: admin })).status, 200, 'a same-origin call works');
});


t.test(
  'a page on another origin cannot read the API with a key it holds',
  { skip: skipUnless(missing.chromium()) },
  async (t) => {
    const h = await startGateway(t);
    const api = await h.app.listen({ port: 0, host: '127.0.0.1' });
    // The attacker's page: another origin (another port on localhost).
    const evil = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>evil</title>');
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    t.teardown(() => new Promise<void>((r) => evil.close(() => r())));
    const evilUrl = `http://localhost:${(evil.address() as net.AddressInfo).port}/`;

    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
    t.teardown(() => browser.close());
    const page = await browser.newPage();
    await page.goto(evilUrl);
    const attempt = (init: { auth: boolean }) =>
      page.evaluate(
        async ({ url, key, auth }) => {
          try {
            const res = await fetch(url, auth ? { headers: { authorization: `Bearer ${key}` } } : {});
            return { read: await res.text() };
          } catch (err) {
            return { error: String(err) };
          }
        },
        { url: `${api}/v1/facilities`, key: h.key.admin, auth: init.auth },
      );
    const withKey = await attempt({ auth: true });
    t.notOk('read' in withKey, 'the page cannot read a response made with the key');
    t.match(withKey, { error: /TypeError|Failed to fetch/ }, 'the browser refused it');
    const plain = await attempt({ auth: false });
    t.notOk('read' in plain, 'nor a response without a key');
    // Control: the same fetch from the gateway's own origin (the dashboard) reads the response.
    await page.goto(api + '/');
    const own = await attempt({ auth: true });
    t.match(own, { read: /facA/ }, 'same origin: the dashboard can read it');
  },
);
