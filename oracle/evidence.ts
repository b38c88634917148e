/**
 * Evidence of one settlement: every input and output of the methodology as leaves of an
 * OpenZeppelin StandardMerkleTree (leaf hash = keccak256(keccak256(abi.encode(leaf))), sorted pairs,
 * leaves sorted by hash). Its root goes on-chain; any reading's inclusion can be proven later.
 * docs/METHODOLOGY.md "Evidence" documents every leaf so an auditor can rebuild the tree with the
 * @openzeppelin/merkle-tree package alone.
 */
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import { getProof, makeMerkleTree } from '@openzeppelin/merkle-tree/dist/core.js';
import { keccak256 } from '../contracts/client/crypto.ts';
import { canonicalJson } from './canonical.ts';
import { METHODOLOGY_V2, type WindowResult } from './methodology.ts';

/**
 * One encoding for every leaf kind (unused fields are "" / 0 / false). From mrv-signed-3 on a ninth
 * field carries the reading's device signature (base64; "" when unsigned, and for other kinds).
 */
export const LEAF_ENCODING: string[] = ['string', 'string', 'int256', 'int256', 'string', 'string', 'bool', 'bool', 'string'];
/** The encoding of mrv-cursor-2 settlements (no signature field). */
export const LEAF_ENCODING_V2: string[] = LEAF_ENCODING.slice(0, 8);

/** [kind, id, a, b, c, d, e, f] (mrv-cursor-2) or [kind, id, a, b, c, d, e, f, sig]; int256 fields as decimal text. */
export type EvidenceLeaf = [string, string, string, string, string, string, boolean, boolean] | [string, string, string, string, string, string, boolean, boolean, string];

export type LeafKind = 'header' | 'factors' | 'result' | 'device' | 'decommissioned' | 'cursor_start' | 'cursor_end' | 'reading' | 'chain' | 'voided' | 'void' | 'correction';

/** The leaf encoding of a leaf (by its length) or of a methodology version. */
export function leafEncoding(of: EvidenceLeaf | string): string[] {
  if (typeof of === 'string') return of === METHODOLOGY_V2 ? [...LEAF_ENCODING_V2] : [...LEAF_ENCODING];
  return of.length === 8 ? [...LEAF_ENCODING_V2] : [...LEAF_ENCODING];
}

export interface Evidence {
  root: string;
  leaves: EvidenceLeaf[];
  /** Standard leaf hash of each leaf (same order as `leaves`). */
  hashes: string[];
  /** The tree as @openzeppelin/merkle-tree's core array (root first, leaves sorted by hash at the end). */
  tree: string[];
  /** Position of each leaf in `tree`. */
  treeIndex: number[];
}

const WORD = 32;
const TWO_255 = 1n << 255n;
const TWO_256 = 1n << 256n;

function writeWord(out: Buffer, at: number, v: bigint): void {
  if (v >= TWO_255 || v < -TWO_255) throw new RangeError(`int256 out of range: ${v}`);
  const hex = (v < 0n ? v + TWO_256 : v).toString(16).padStart(64, '0');
  out.write(hex, at, 'hex');
}

/**
 * abi.encode(string, string, int256, int256, string, string, bool, bool[, string]) of one leaf, written
 * directly (the generic encoders cost about a millisecond per leaf here; a window of a device reading
 * every second has 3,600 leaves). Tests check it byte for byte against ethers' AbiCoder and the tree
 * against StandardMerkleTree.
 */
export function encodeLeaf(l: EvidenceLeaf): Buffer {
  const head = l.length;
  const strings = [Buffer.from(l[0], 'utf8'), Buffer.from(l[1], 'utf8'), Buffer.from(l[4], 'utf8'), Buffer.from(l[5], 'utf8')];
  if (head === 9) strings.push(Buffer.from(l[8] as string, 'utf8'));
  let size = head * WORD;
  for (const b of strings) size += WORD + Math.ceil(b.length / WORD) * WORD;
  const out = Buffer.alloc(size);
  let tail = head * WORD;
  const putString = (slot: number, b: Buffer) => {
    writeWord(out, slot * WORD, BigInt(tail));
    writeWord(out, tail, BigInt(b.length));
    b.copy(out, tail + WORD);
    tail += WORD + Math.ceil(b.length / WORD) * WORD;
  };
  putString(0, strings[0]);
  putString(1, strings[1]);
  writeWord(out, 2 * WORD, BigInt(l[2]));
  writeWord(out, 3 * WORD, BigInt(l[3]));
  putString(4, strings[2]);
  putString(5, strings[3]);
  out[6 * WORD + 31] = l[6] ? 1 : 0;
  out[7 * WORD + 31] = l[7] ? 1 : 0;
  if (head === 9) putString(8, strings[4]);
  return out;
}

/** StandardMerkleTree's leaf hash: keccak256(keccak256(abi.encode(leaf))). */
export function leafHash(l: EvidenceLeaf): string {
  return keccak256(keccak256(encodeLeaf(l)));
}

const n = (v: number | bigint): string => {
  if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new TypeError(`evidence: ${v} is not a safe integer`);
  return v.toString();
};

/** The leaves of a settlement, in a stable order (the tree sorts them by hash anyway). */
export function evidenceLeaves(r: WindowResult): EvidenceLeaf[] {
  const v2 = r.methodologyVersion === METHODOLOGY_V2;
  const leaves: EvidenceLeaf[] = [];
  leaves.push(['header', r.facilityId, n(r.window.start), n(r.window.end), r.methodologyVersion, r.baselineKgPerHour, false, false]);
  const { hash, ...factorBody } = r.factors;
  leaves.push(['factors', r.factors.version, '0', '0', hash, canonicalJson(factorBody), false, false]);
  // The last flag: the net was capped at the window's baseline grams (exports cannot earn above it).
  leaves.push(['result', r.facilityId, n(r.netGrams), n(r.rawNetGrams), r.actualKg, canonicalJson(r.totals), r.complete, r.capped]);
  for (const d of r.devices) {
    // What the settlement saw of the device (its visibility mark), what its previous settlement saw,
    // and the coverage facts and verdict (docs/METHODOLOGY.md "Evidence tree").
    const prev = d.prev ? canonicalJson({ before: d.prev.before, late: d.prev.mark.late, maxSeq: d.prev.mark.maxSeq }) : '';
    const coverage = canonicalJson({
      after: d.coverage.after,
      before: d.coverage.before ? { seq: d.coverage.before.seq, ts: d.coverage.before.ts } : undefined,
      between: d.coverage.between,
      intervalDevice: d.intervalDevice,
      lastIn: d.coverage.lastIn ? { seq: d.coverage.lastIn.seq, ts: d.coverage.lastIn.ts } : undefined,
      reportingIntervalSeconds: d.reportingIntervalSeconds,
      status: d.status,
    });
    leaves.push(['device', d.deviceId, n(d.mark?.maxSeq ?? -1), n(d.mark?.late ?? 0), prev, coverage, d.inCoverage, d.status === 'ok']);
    if (!d.inCoverage && d.decommissioned) leaves.push(['decommissioned', d.deviceId, n(d.decommissioned.at), '0', d.decommissioned.reason, '', false, false]);
    for (const c of d.startCursors) leaves.push(['cursor_start', d.deviceId, n(c.seq), n(c.ts), c.metric, c.value, false, false]);
    for (const c of d.endCursors) leaves.push(['cursor_end', d.deviceId, n(c.seq), n(c.ts), c.metric, c.value, false, false]);
    if (d.chain) {
      // The device's hash chain over the readings used: how many were signed, where it broke (and
      // why), where a new chain started, and which predecessors (not used here) it relied on.
      const c = d.chain;
      leaves.push(['chain', d.deviceId, n(c.signed), n(c.breaks.length), canonicalJson({ breaks: c.breaks.map((b) => ({ reason: b.reason, seq: b.seq })), context: c.context, starts: c.starts }), '', c.unbroken, false]);
    }
    for (const { reading: x, late } of d.consumed) {
      if (v2) leaves.push(['reading', x.deviceId, n(x.seq), n(x.ts), x.metric, x.value, x.reset, late]);
      else leaves.push(['reading', x.deviceId, n(x.seq), n(x.ts), x.metric, x.value, x.reset, late, x.sig ?? '']);
    }
    // Readings a void left out: committed to as such, so an auditor sees what was not counted.
    for (const { reading: x, late } of d.voided ?? []) leaves.push(['voided', x.deviceId, n(x.seq), n(x.ts), x.metric, x.value, x.reset, late, x.sig ?? '']);
  }
  // The voids applied ([from, to) in epoch ms, the void's number and reason) and, for a correction,
  // what it corrects: the original settlement, its root, the correction's number and the net before it.
  for (const v of r.voids ?? []) leaves.push(['void', v.deviceId, n(v.from), n(v.to), String(v.id), v.reason, false, false, '']);
  if (r.correction) {
    const c = r.correction;
    leaves.push(['correction', c.settlementId, n(c.seq), c.prevNetGrams, c.originalRoot, c.reason, false, false, '']);
  }
  if (v2) return leaves.map((l): EvidenceLeaf => (l.length === 9 ? (l.slice(0, 8) as EvidenceLeaf) : l));
  // mrv-signed-3: every leaf has the signature field ("" but in a signed reading's leaf).
  return leaves.map((l): EvidenceLeaf => (l.length === 9 ? l : [...l, '']));
}

/** The evidence tree, built exactly as StandardMerkleTree.of(leaves, LEAF_ENCODING) builds it. */
export function buildEvidence(r: WindowResult): Evidence {
  return buildTree(evidenceLeaves(r));
}

/** The tree of any leaves, all in LEAF_ENCODING or all in LEAF_ENCODING_V2 (what StandardMerkleTree.of would build). */
export function buildTree(leaves: EvidenceLeaf[]): Evidence {
  const hashes = leaves.map(leafHash);
  // StandardMerkleTree sorts the leaves by hash (same-length lowercase hex sorts like the bytes).
  const order = hashes.map((_, i) => i).sort((a, b) => (hashes[a] < hashes[b] ? -1 : hashes[a] > hashes[b] ? 1 : 0));
  const tree = makeMerkleTree(order.map((i) => hashes[i]));
  const treeIndex: number[] = new Array(leaves.length);
  order.forEach((leafIdx, sortedIdx) => {
    treeIndex[leafIdx] = tree.length - 1 - sortedIdx;
  });
  return { root: tree[0], leaves, hashes, tree, treeIndex };
}

export interface ReadingProof {
  root: string;
  leaf: EvidenceLeaf;
  proof: string[];
  leafEncoding: string[];
}

/** Inclusion proof of reading (deviceId, seq), or undefined when the settlement did not consume it. */
export function readingProof(e: Evidence, deviceId: string, seq: number): ReadingProof | undefined {
  const s = n(seq);
  const index = e.leaves.findIndex((l) => l[0] === 'reading' && l[1] === deviceId && l[2] === s);
  if (index < 0) return undefined;
  const leaf = e.leaves[index];
  return { root: e.root, leaf, proof: getProof(e.tree, e.treeIndex[index]), leafEncoding: leafEncoding(leaf) };
}

/** Checks a proof with the Merkle package alone (what an auditor runs). */
export function verifyReadingProof(root: string, leaf: EvidenceLeaf, proof: string[]): boolean {
  return StandardMerkleTree.verify(root, leafEncoding(leaf), leaf, proof);
}
