/**
 * The module boundaries of docs/DESIGN.md, checked over the product's source files (everything but
 * test/, bench/, examples/ — the examples are stand-alone scripts an auditor runs without the product's
 * modules, so they import ethers themselves — and generated or vendored folders):
 * - only contracts/client/ imports ethers;
 * - only store/ imports the database drivers (better-sqlite3, pg).
 * Any import form counts: `import … from`, `import type`, `export … from`, `import()`, `require()`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SKIP = new Set(['node_modules', 'test', 'bench', 'examples', 'artifacts', 'cache', 'data', 'docs', '.git']);
const SOURCE = /\.(ts|mts|cts|js|mjs|cjs)$/;

function productFiles(dir = ROOT): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (dir === ROOT && SKIP.has(e.name)) continue;
    if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
    const full = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...productFiles(full));
    else if (SOURCE.test(e.name)) out.push(path.relative(ROOT, full).split(path.sep).join('/'));
  }
  return out;
}

/** The module specifiers a file imports, in any form. */
function importsOf(text: string): string[] {
  const out: string[] = [];
  const forms = [/\b(?:import|export)\s[^'";]*?\sfrom\s*['"]([^'"]+)['"]/g, /\bimport\s*['"]([^'"]+)['"]/g, /\b(?:import|require)\s*\(\s*['"]([^'"]+)['"]\s*\)/g];
  for (const re of forms) for (const m of text.matchAll(re)) out.push(m[1]);
  return out;
}

/** Whether `spec` names `pkg` or a path inside it (`ethers`, `ethers/lib`; not `ethers-x`). */
const names = (spec: string, pkg: string) => spec === pkg || spec.startsWith(`${pkg}/`);

const RULES = [
  { pkg: 'ethers', owner: 'contracts/client/' },
  { pkg: 'better-sqlite3', owner: 'store/' },
  { pkg: 'pg', owner: 'store/' },
];

t.test('the import scanner sees every form of import', async (t) => {
  t.same(importsOf(`import { ethers } from 'ethers';\nimport type { Pool } from "pg";\nexport { keccak256 } from 'ethers';\nimport 'better-sqlite3';\nconst m = await import('pg');\nconst r = require("ethers/lib");`).sort(), ['better-sqlite3', 'ethers', 'ethers', 'ethers/lib', 'pg', 'pg'].sort());
  t.notOk(names('pg-connection-string', 'pg'));
  t.ok(names('ethers/lib', 'ethers'));
});

t.test('only contracts/client/ imports ethers, only store/ imports better-sqlite3 and pg', async (t) => {
  const files = productFiles();
  const seen: Record<string, string[]> = {};
  const offenders: string[] = [];
  for (const file of files) {
    const specs = importsOf(fs.readFileSync(path.join(ROOT, file), 'utf8'));
    for (const rule of RULES) {
      if (!specs.some((s) => names(s, rule.pkg))) continue;
      (seen[rule.pkg] ??= []).push(file);
      if (!file.startsWith(rule.owner)) offenders.push(`${file} imports ${rule.pkg} (only ${rule.owner} may)`);
    }
  }
  // The scan is not vacuous: it finds the owners' own imports.
  t.ok(seen.ethers?.includes('contracts/client/ledger.ts'), 'finds contracts/client/ledger.ts importing ethers');
  t.ok(seen['better-sqlite3']?.some((f) => f.startsWith('store/sqlite/')), 'finds store/sqlite/ importing better-sqlite3');
  t.ok(seen.pg?.some((f) => f.startsWith('store/postgres/')), 'finds store/postgres/ importing pg');
  t.ok(files.includes('gateway/cli.ts') && files.includes('main.ts') && files.includes('compose.ts'), 'scans the entry points');
  t.same(offenders, [], 'no product file outside the owner imports the package');
});
