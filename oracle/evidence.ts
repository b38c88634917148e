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
import type { WindowResult } from './methodology.ts';

/** One encoding for every leaf kind (unused fields are "" / 0 / false). */
export const LEAF_ENCODING: string[] = ['string', 'string', 'int256', 'int256', 'string', 'string', 'bool', 'bool'];

/** [kind, id, a, b, c, d, e, f]; int256 fields as decimal text. */
export type EvidenceLeaf = [string, string, string, string, string, string, boolean, boolean];

export type LeafKind = 'header' | 'factors' | 'result' | 'device' | 'decommissioned' | 'cursor_start' | 'cursor_end' | 'reading';

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
 * abi.encode(string, string, int256, int256, string, string, bool, bool) of one leaf, written
 * directly (the generic encoders cost about a millisecond per leaf here; a window of a device reading
 * every second has 3,600 leaves). Tests check it byte for byte against ethers' AbiCoder and the tree
 * against StandardMerkleTree.
 */
export function encodeLeaf(l: EvidenceLeaf): Buffer {
  const strings = [Buffer.from(l[0], 'utf8'), Buffer.from(l[1], 'utf8'), Buffer.from(l[4], 'utf8'), Buffer.from(l[5], 'utf8')];
  let size = 8 * WORD;
  for (const b of strings) size += WORD + Math.ceil(b.length / WORD) * WORD;
  const out = Buffer.alloc(size);
  let tail = 8 * WORD;
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
    for (const { reading: x, late } of d.consumed) leaves.push(['reading', x.deviceId, n(x.seq), n(x.ts), x.metric, x.value, x.reset, late]);
  }
  return leaves;
}

/** The evidence tree, built exactly as StandardMerkleTree.of(leaves, LEAF_ENCODING) builds it. */
export function buildEvidence(r: WindowResult): Evidence {
  return buildTree(evidenceLeaves(r));
}

/** The tree of any leaves in LEAF_ENCODING (what StandardMerkleTree.of would build). */
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
  return { root: e.root, leaf, proof: getProof(e.tree, e.treeIndex[index]), leafEncoding: [...LEAF_ENCODING] };
}

/** Checks a proof with the Merkle package alone (what an auditor runs). */
export function verifyReadingProof(root: string, leaf: EvidenceLeaf, proof: string[]): boolean {
  return StandardMerkleTree.verify(root, LEAF_ENCODING, leaf, proof);
}
