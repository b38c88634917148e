/**
 * The dashboard: one HTML page, a small ES module, a stylesheet and chart.js's UMD build straight
 * from node_modules. Files are read once at start from a fixed list (no path from the URL touches
 * the file system).
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import type { GatewayContext } from '../app.ts';

const PUBLIC = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'public');

function chartJsFile(): string {
  const require = createRequire(import.meta.url);
  // The package's "require" export is dist/chart.cjs; the browser build sits next to it.
  return path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.min.js');
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

export function registerDashboardRoutes(app: FastifyInstance, _ctx: GatewayContext): void {
  const files: Record<string, { file: string; cache: string }> = {
    '/': { file: path.join(PUBLIC, 'index.html'), cache: 'no-cache' },
    '/assets/app.js': { file: path.join(PUBLIC, 'app.js'), cache: 'no-cache' },
    '/assets/style.css': { file: path.join(PUBLIC, 'style.css'), cache: 'no-cache' },
    '/assets/chart.umd.min.js': { file: chartJsFile(), cache: 'public, max-age=86400' },
  };
  for (const [url, { file, cache }] of Object.entries(files)) {
    const body = fs.readFileSync(file);
    const type = TYPES[path.extname(file)] ?? 'application/octet-stream';
    const schema = url === '/' ? { tags: ['dashboard'], summary: 'Dashboard (HTML; the API key is entered in the page)', security: [] } : { hide: true };
    app.get(url, { schema, config: { rateLimit: false } }, async (_request, reply) => {
      reply.header('content-type', type).header('cache-control', cache);
      return body;
    });
  }
}
