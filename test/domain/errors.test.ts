import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { catalogue, errors, isError } from '../../domain/errors.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Literal codes still written in files other lanes of issue 11 are rewriting (they move to the
 * catalogue's names there); every other product file may only name a code through the catalogue.
 */
const PENDING: Record<string, string[]> = {};

function productFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (!['node_modules', 'public', 'artifacts', 'cache'].includes(e.name)) out.push(...productFiles(rel));
    } else if (e.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

t.test('every code is declared once', async (t) => {
  const codes = catalogue.map((d) => d.code);
  t.same(codes.filter((c, i) => codes.indexOf(c) !== i), [], 'no code declared twice');
  for (const d of catalogue) t.ok(d.statusCode >= 400 && d.statusCode < 600, `${d.code}: an HTTP error status`);
});

t.test('one failure, one code: the 409s are told apart', async (t) => {
  const conflicts = catalogue.filter((d) => d.statusCode === 409).map((d) => d.code);
  t.notOk(conflicts.includes('CONFLICT'), 'no catch-all CONFLICT');
  t.ok(conflicts.includes(errors.FACILITY_EXISTS.code) && conflicts.includes(errors.DEVICE_DECOMMISSIONED.code) && conflicts.includes(errors.FACILITY_SETTLED.code));
  t.equal(errors.DEVICE_DECOMMISSIONED('m1').message, 'device m1 is decommissioned; that is final');
  t.ok(isError(errors.FACILITY_EXISTS('f'), errors.FACILITY_EXISTS));
  t.notOk(isError(errors.FACILITY_EXISTS('f'), errors.DEVICE_EXISTS));
  t.notOk(isError(null, errors.DEVICE_EXISTS));
});

t.test('no product file builds or matches a code as a string literal', async (t) => {
  const files = ['main.ts', ...['broker', 'contracts/client', 'domain', 'gateway', 'oracle', 'simulators', 'store'].flatMap(productFiles)];
  const offences: string[] = [];
  for (const file of files) {
    if (file === path.join('domain', 'errors.ts')) continue;
    const text = readFileSync(path.join(ROOT, file), 'utf8');
    for (const { code } of catalogue) {
      if ((PENDING[file] ?? []).includes(code)) continue;
      if (new RegExp(`['"\`]${code}['"\`]`).test(text)) offences.push(`${file}: '${code}'`);
    }
  }
  t.same(offences, [], 'use errors.X(...) to throw and errors.X.code / isError(err, errors.X) to match');
});
