/**
 * Every revert the ledger can produce, decoded in one place and said as a sentence a user can act
 * on. ethers throws reverts in many shapes (estimateGas, call or a mined revert, through any
 * provider, sometimes as "execution reverted (unknown custom error)" with the data nested inside):
 * `decodeLedgerError` finds the data and names the error from the ledger's ABI (its own errors and
 * the OpenZeppelin ERC-1155, AccessControl, Pausable, Nonces and EIP-712 errors it uses) plus the
 * other OpenZeppelin standard errors (ERC-721, ECDSA, …), `Panic(code)` and `Error(string)`;
 * `explainRevert` turns it into a sentence; `describeChainError` does both for anything thrown and
 * also words the usual non-revert failures (no gas money, node unreachable).
 *
 * `classifyChainError` is the one rule for what a failure is (a revert, the node being unavailable,
 * something else) and `toChainError` turns it into the catalogue's error: every call through the
 * ledger port leaves with it, and the gateway maps what other chain code throws with it too.
 *
 * Users: the contracts client wraps reverts as LedgerRevertError, whose message is the sentence
 * (what the oracle logs and the gateway relay answer); the CLI prints `describeChainError`.
 */
import { ethers } from 'ethers';
import { DomainError, errors, isError } from '../../domain/errors.ts';
import { gramsToTonnes } from '../../domain/decimal.ts';
import { loadArtifact } from './artifact.ts';

export interface DecodedLedgerError {
  /** Solidity error name, e.g. `WindowAlreadySettled`, `AccessControlUnauthorizedAccount`, `EnforcedPause`. */
  name: string;
  /** Arguments in declaration order (uint/int as bigint, bytes32/address as 0x strings). */
  args: unknown[];
}

/** What the caller knows, to word the sentence for its reader. */
export interface RevertContext {
  /** The account the reader acts as (the CLI's key): "you hold" instead of "0x… holds". */
  you?: string;
  /** What the call was doing, e.g. `retire`, `transfer`, `settle` (defaults to a neutral wording). */
  action?: string;
  /** Facility ids the reader knows: a facility key (keccak256 of the id) is then named by its id. */
  facilityIds?: readonly string[];
}

/** A ledger call reverted with a known custom error. `revert` says which; the original is `cause`. */
export class LedgerRevertError extends DomainError {
  readonly revert: DecodedLedgerError;

  constructor(revert: DecodedLedgerError, cause: unknown) {
    super(errors.LEDGER_REVERTED.code, `ledger reverted: ${explainRevert(revert)} [${rawRevert(revert)}]`, 409, revert);
    this.name = 'LedgerRevertError';
    this.revert = revert;
    this.cause = cause;
  }
}

/** `Name(arg, …)` as Solidity would write it: kept beside the sentence for logs and support. */
export function rawRevert(r: DecodedLedgerError): string {
  return `${r.name}(${r.args.map(formatArg).join(', ')})`;
}

function formatArg(a: unknown): string {
  return typeof a === 'bigint' ? a.toString() : String(a);
}

/** OpenZeppelin's standard errors the ledger ABI may not carry (a contract the client may meet). */
const OPENZEPPELIN_ERRORS = [
  'error ERC1155InsufficientBalance(address sender, uint256 balance, uint256 needed, uint256 tokenId)',
  'error ERC1155InvalidSender(address sender)',
  'error ERC1155InvalidReceiver(address receiver)',
  'error ERC1155MissingApprovalForAll(address operator, address owner)',
  'error ERC1155InvalidApprover(address approver)',
  'error ERC1155InvalidOperator(address operator)',
  'error ERC1155InvalidArrayLength(uint256 idsLength, uint256 valuesLength)',
  'error ERC721InvalidOwner(address owner)',
  'error ERC721NonexistentToken(uint256 tokenId)',
  'error ERC721IncorrectOwner(address sender, uint256 tokenId, address owner)',
  'error ERC721InvalidSender(address sender)',
  'error ERC721InvalidReceiver(address receiver)',
  'error ERC721InsufficientApproval(address operator, uint256 tokenId)',
  'error ERC721InvalidApprover(address approver)',
  'error ERC721InvalidOperator(address operator)',
  'error ECDSAInvalidSignature()',
  'error ECDSAInvalidSignatureLength(uint256 length)',
  'error ECDSAInvalidSignatureS(bytes32 s)',
  'error ReentrancyGuardReentrantCall()',
  'error OwnableUnauthorizedAccount(address account)',
  'error OwnableInvalidOwner(address owner)',
];

let ifaces: ethers.Interface[] | undefined;
function interfaces(): ethers.Interface[] {
  ifaces ??= [new ethers.Interface(loadArtifact().abi as ethers.InterfaceAbi), new ethers.Interface(OPENZEPPELIN_ERRORS)];
  return ifaces;
}

const HEX = /^0x[0-9a-fA-F]*$/;

/** Every 0x… string at a `data` key anywhere in the error (ethers nests the RPC error at various depths). */
export function revertDataCandidates(e: unknown): string[] {
  const out: string[] = [];
  const seen = new Set<unknown>();
  const visit = (v: unknown, depth: number): void => {
    if (v === null || typeof v !== 'object' || seen.has(v) || depth > 6) return;
    seen.add(v);
    const rec = v as Record<string, unknown>;
    const data = rec.data;
    if (typeof data === 'string' && HEX.test(data) && data.length >= 10) out.push(data);
    for (const key of ['error', 'info', 'cause', 'data', 'payload']) visit(rec[key], depth + 1);
  };
  visit(e, 0);
  // Some providers only put the data in the message text.
  const message = (e as { message?: unknown } | null)?.message;
  if (typeof message === 'string') {
    for (const m of message.matchAll(/0x[0-9a-fA-F]{8,}/g)) out.push(m[0]);
  }
  return out;
}

/**
 * The ledger custom error (or OpenZeppelin error, or a Solidity `Panic(code)` / `Error(message)`)
 * carried by `e`, or undefined when `e` is not a decodable revert (network failure, timeout, out of
 * gas, an unknown selector...).
 */
export function decodeLedgerError(e: unknown): DecodedLedgerError | undefined {
  if (e instanceof LedgerRevertError) return e.revert;
  for (const data of revertDataCandidates(e)) {
    for (const i of interfaces()) {
      try {
        const parsed = i.parseError(data);
        if (parsed) return { name: parsed.name, args: [...parsed.args] };
      } catch {
        // not this interface's; try the next
      }
    }
  }
  return undefined;
}

/** Rethrows `e` as a LedgerRevertError when it carries a ledger custom error, else as it is. */
export function toLedgerError(e: unknown): unknown {
  const decoded = decodeLedgerError(e);
  return decoded ? new LedgerRevertError(decoded, e) : e;
}

const ROLE_NAMES: Record<string, string> = {
  [ethers.ZeroHash]: 'admin (DEFAULT_ADMIN_ROLE)',
  [ethers.id('REGULATOR_ROLE')]: 'regulator (REGULATOR_ROLE)',
  [ethers.id('ORACLE_ROLE')]: 'oracle (ORACLE_ROLE)',
};

const PANICS: Record<string, string> = {
  '1': 'an internal assertion failed',
  '17': 'an arithmetic overflow or underflow',
  '18': 'a division by zero',
  '33': 'an invalid enum value',
  '34': 'a corrupted storage byte array',
  '49': 'a pop from an empty array',
  '50': 'an array index out of bounds',
  '65': 'an out-of-memory allocation',
  '81': 'a call to an uninitialised function',
};

function grams(v: unknown): string {
  const g = BigInt(v as bigint);
  return `${g} g (${gramsToTonnes(g)} t)`;
}

/** A window boundary (unix seconds) as ISO time, the raw number when out of Date's range. */
function when(v: unknown): string {
  const s = BigInt(v as bigint);
  const d = new Date(Number(s) * 1000);
  return s >= 0n && s < 8_640_000_000_000n && !Number.isNaN(d.getTime()) ? `${d.toISOString()} (${s})` : String(s);
}

/**
 * The sentence for a decoded revert: what happened, with the numbers, and what to do about it.
 * Unknown names fall back to the raw `Name(args)`.
 */
export function explainRevert(r: DecodedLedgerError, ctx: RevertContext = {}): string {
  const a = r.args;
  const you = ctx.you ? ethers.getAddress(ctx.you) : undefined;
  const who = (addr: unknown) => (you && typeof addr === 'string' && ethers.isAddress(addr) && ethers.getAddress(addr) === you ? 'you' : `account ${String(addr)}`);
  const facility = (key: unknown) => {
    const id = ctx.facilityIds?.find((f) => ethers.id(f) === String(key).toLowerCase());
    return id ? `facility ${id}` : `the facility with key ${String(key)}`;
  };
  switch (r.name) {
    case 'ERC1155InsufficientBalance': {
      const holds = who(a[0]) === 'you' ? 'you hold' : `${who(a[0])} holds`;
      const tried = ctx.action ? `tried to ${ctx.action} ${grams(a[2])}; ${ctx.action} at most ${a[1]} g` : `the request needs ${grams(a[2])}; ask for at most ${a[1]} g`;
      return `insufficient balance: ${holds} ${grams(a[1])}, ${tried}, or wait for more settled windows`;
    }
    case 'ERC1155InvalidSender':
    case 'ERC1155InvalidReceiver':
    case 'ERC1155InvalidApprover':
    case 'ERC1155InvalidOperator':
    case 'ERC721InvalidSender':
    case 'ERC721InvalidReceiver':
    case 'ERC721InvalidApprover':
    case 'ERC721InvalidOperator':
    case 'ERC721InvalidOwner': {
      const role = r.name.replace(/^ERC\d+Invalid/, '').toLowerCase();
      return `invalid ${role} ${String(a[0])}: it must be a real account, not the zero address`;
    }
    case 'ERC1155MissingApprovalForAll':
      return `operator ${String(a[0])} is not approved to move the tokens of ${String(a[1])}: the owner must call setApprovalForAll first`;
    case 'ERC1155InvalidArrayLength':
      return `ids and values differ in length (${a[0]} ids, ${a[1]} values): pass one value per id`;
    case 'ERC721NonexistentToken':
      return `token ${a[0]} does not exist`;
    case 'ERC721IncorrectOwner':
      return `token ${a[1]} belongs to ${String(a[2])}, not ${String(a[0])}`;
    case 'ERC721InsufficientApproval':
      return `operator ${String(a[0])} is not approved for token ${a[1]}`;
    case 'AccessControlUnauthorizedAccount': {
      const role = ROLE_NAMES[String(a[1]).toLowerCase()] ?? `role ${String(a[1])}`;
      return `not allowed: ${who(a[0])} lacks the ${role} role this call needs; sign with the key that holds it (docs/CONTRACTS.md lists the roles)`;
    }
    case 'AccessControlBadConfirmation':
      return 'a role can only be renounced by the account holding it, confirming its own address';
    case 'OwnableUnauthorizedAccount':
      return `not allowed: ${who(a[0])} is not the contract's owner`;
    case 'OwnableInvalidOwner':
      return `invalid owner ${String(a[0])}`;
    case 'EnforcedPause':
      return 'the ledger is paused by its administrator: settlements, transfers and retirements wait until it is unpaused';
    case 'ExpectedPause':
      return 'the ledger is not paused, so it cannot be unpaused';
    case 'InvalidAccountNonce':
      return `the signed request's nonce is already used: ${who(a[0]) === 'you' ? 'you are' : `${who(a[0])} is`} at nonce ${a[1]} (a request with this nonce was submitted earlier); sign a new request`;
    case 'InvalidRetirementSignature':
      return `the signature is not ${who(a[0]) === 'you' ? 'yours' : `that of ${who(a[0])}`}: sign the request with the holder's own key, for this ledger and chain`;
    case 'RetirementSignatureExpired':
      return `the signed request expired at ${when(a[0])}: sign a new one (the CLI's --valid-seconds sets how long it stays valid)`;
    case 'ECDSAInvalidSignature':
    case 'ECDSAInvalidSignatureLength':
    case 'ECDSAInvalidSignatureS':
      return 'the signature is malformed: sign the request again with the holder\'s key';
    case 'InvalidRetirementAmount':
      return `a retirement needs at least 1 g (got ${a[0]} g)`;
    case 'MissingBeneficiary':
      return 'a retirement needs a beneficiary (on whose behalf the credits are retired)';
    case 'RetirementTextTooLong':
      return `the beneficiary or reason is ${a[0]} bytes long; at most ${a[1]} bytes (UTF-8)`;
    case 'RetirementNotFound':
      return `no retirement #${a[0]} on this ledger`;
    case 'FacilityIsSuspended':
      return `${facility(a[0])} is suspended by the regulator: its batches cannot be retired or moved, wherever held, until it is reinstated`;
    case 'FacilityInDeficit':
      return `${facility(a[0])} is in deficit (${grams(a[1])}): its owner's credits of it cannot move or be retired until settlements pay the deficit down`;
    case 'FacilityLagging':
      return `${facility(a[0])}'s settlement lags more than two windows (next window ${when(a[1])}): its owner's credits of it are frozen until the oracle catches up`;
    case 'BatchNotFound':
      return `no batch with token id ${a[0]} on this ledger (GET /v1/batches lists a facility's batches)`;
    case 'InvalidRetirementBatchCount':
      return `a retirement takes 1 to 32 batches (got ${a[0]})`;
    case 'WindowNotEnded':
      return `${facility(a[0])}'s window ending ${when(a[1])} has not ended on chain (block time ${when(a[2])}): settle it after it ends`;
    case 'NetAboveCap':
      return `${facility(a[0])}: a window's net of ${grams(a[1])} is above its cap of ${grams(a[2])} (baseline plus export allowance for one window)`;
    case 'MisalignedWindow':
      return `${facility(a[0])}: ${when(a[1])} is not a multiple of the ledger's window length`;
    case 'InvalidWindowLength':
      return `a window length must be 1 s to 28 days (got ${a[0]} s)`;
    case 'CapOutOfRange':
      return `${facility(a[0])}: a cap of ${a[1]} g per window is beyond what the ledger stores (2^56 g)`;
    case 'LimitsChangePending':
      return `${facility(a[0])} has a baseline or allowance change scheduled from ${when(a[1])}: one change at a time`;
    case 'InvalidDeviceRecord':
      return 'a device id must be 1 to 64 bytes, a void range non-empty with a reason of 1 to 256 bytes';
    case 'FacilityNotRegistered':
      return `${facility(a[0])} is not registered on the ledger: register it first (POST /v1/facilities; the oracle pushes what the gateway could not)`;
    case 'FacilityAlreadyRegistered':
      return `${facility(a[0])} is already registered on the ledger`;
    case 'InvalidFacilityOwner':
      return 'a facility owner must be a real address, not the zero address';
    case 'InvalidFacilityId':
      return `a facility id must be 1 to 64 characters of A-Z, a-z, 0-9, _ and - (got ${a[0]} bytes)`;
    case 'FacilityHasSettlements':
      return `${facility(a[0])} already has settlements: it can no longer be deregistered or change owner`;
    case 'BaselineEffectiveTooEarly':
      return `a baseline change for ${facility(a[0])} must take effect at or after its next unsettled window ${when(a[2])}, not at ${when(a[1])}`;
    case 'InvalidRoleHolder':
      return 'a role holder must be a real address, not the zero address';
    case 'WindowAlreadySettled':
      return `${facility(a[0])}'s window starting ${when(a[1])} is already settled: nothing to do`;
    case 'WindowOutOfOrder':
      return `${facility(a[0])}'s next window to settle starts at ${when(a[1])}, not ${when(a[2])}: windows settle in order, without gaps`;
    case 'NetOutOfRange':
      return `${facility(a[0])}: a window's net of ${a[1]} g is beyond what the ledger stores (±18446744073709551615 g)`;
    case 'TotalOutOfRange':
      return `${facility(a[0])}: its cumulative totals would exceed the ledger's range (18446744073709551615 g)`;
    case 'SafeCastOverflowedUintDowncast':
      return `the value ${a[1]} does not fit the ledger's ${a[0]}-bit field`;
    case 'InvalidShortString':
    case 'StringTooLong':
      return 'a string is too long for the contract\'s EIP-712 domain';
    case 'ReentrancyGuardReentrantCall':
      return 'a reentrant call was refused';
    case 'Panic':
      return `the contract hit ${PANICS[String(a[0])] ?? `panic code ${a[0]}`}: a bug or an input beyond its range; report it with the transaction`;
    case 'Error':
      return `the contract refused: ${String(a[0])}`;
    default:
      return rawRevert(r);
  }
}

/**
 * One sentence for anything a chain call threw: a decoded revert (see explainRevert); a revert
 * without data the ABI knows; the signer lacking ether for gas; an unreachable node; otherwise
 * ethers' short message. `rpc` names the endpoint in the unreachable case.
 */
export function describeChainError(e: unknown, ctx: RevertContext & { rpc?: string } = {}): string {
  const decoded = decodeLedgerError(e);
  if (decoded) return explainRevert(decoded, ctx);
  const x = e as { code?: string; shortMessage?: string; message?: string; data?: unknown; cause?: unknown } | null;
  // An outage the client already turned into CHAIN_UNAVAILABLE (toChainError) is said as the outage it wraps.
  if (x instanceof DomainError && isError(x, errors.CHAIN_UNAVAILABLE) && x.cause !== undefined) return describeChainError(x.cause, ctx);
  if (x instanceof DomainError) return x.message;
  if (x?.code === 'INSUFFICIENT_FUNDS' || /insufficient funds/i.test(x?.message ?? '')) {
    return `the signing account has no ether to pay gas: fund it, or retire through the gateway's relay (--relay URL with an API key), which pays the gas for you`;
  }
  if (x?.code === 'CALL_EXCEPTION') {
    const data = revertDataCandidates(e)[0];
    return data
      ? `the contract refused with an error this client does not know (selector ${data.slice(0, 10)}): is the address a CreditLedger of this version?`
      : 'the contract refused without saying why: check that the address is a CreditLedger on this chain';
  }
  if (classifyChainError(e) === 'unavailable') {
    return `cannot reach the chain${ctx.rpc ? ` at ${ctx.rpc}` : ''}: is the node running (npm start runs it) and is the RPC URL right?`;
  }
  return x?.shortMessage ?? x?.message ?? String(e);
}

/** What a chain failure is: the ledger refused (`revert`), the node did not answer (`unavailable`), or neither. */
export type ChainFailureKind = 'revert' | 'unavailable' | 'other';

/** ethers and Node error codes of a node that cannot be reached or did not answer. */
const OUTAGE_CODES = new Set(['NETWORK_ERROR', 'SERVER_ERROR', 'TIMEOUT', 'UNKNOWN_ERROR', 'ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'EPIPE']);
const OUTAGE_TEXT = /NETWORK_ERROR|ECONNREFUSED|ECONNRESET|ENOTFOUND|fetch failed|socket hang up|could not detect network/i;

/**
 * The one classifier of chain failures. A revert: a LEDGER_REVERTED error, an ethers CALL_EXCEPTION
 * (with or without data this client can decode), or anything carrying a decodable revert. Unavailable:
 * CHAIN_UNAVAILABLE, or a network/timeout code or message anywhere down the cause chain. Any other
 * catalogue error (VALIDATION, CHAIN_SIGNER_MISSING...) is `other`.
 */
export function classifyChainError(e: unknown): ChainFailureKind {
  const x = e as { code?: unknown; name?: unknown } | null;
  if (e instanceof LedgerRevertError || x?.code === errors.LEDGER_REVERTED.code || x?.code === 'CALL_EXCEPTION') return 'revert';
  if (x?.code === errors.CHAIN_UNAVAILABLE.code) return 'unavailable';
  if (e instanceof DomainError) return 'other';
  if (decodeLedgerError(e)) return 'revert';
  for (let c: unknown = e, depth = 0; c && typeof c === 'object' && depth < 4; c = (c as { cause?: unknown }).cause, depth++) {
    const y = c as { code?: unknown; message?: unknown };
    if (typeof y.code === 'string' && OUTAGE_CODES.has(y.code)) return 'unavailable';
    if (typeof y.message === 'string' && OUTAGE_TEXT.test(y.message)) return 'unavailable';
  }
  return 'other';
}

/** Whether the ledger refused the call (see classifyChainError). */
export function isRevert(e: unknown): boolean {
  return classifyChainError(e) === 'revert';
}

/**
 * Anything a chain call threw, as the catalogue says it: a catalogue error as it is; a decodable
 * revert as LedgerRevertError (LEDGER_REVERTED); an unavailable node as CHAIN_UNAVAILABLE (its
 * message cut to 160 characters, the original as `cause`); anything else unchanged (an undecodable
 * CALL_EXCEPTION keeps ethers' shape for describeChainError).
 */
export function toChainError(e: unknown): unknown {
  if (e instanceof DomainError) return e;
  const decoded = decodeLedgerError(e);
  if (decoded) return new LedgerRevertError(decoded, e);
  if (classifyChainError(e) === 'unavailable') {
    const x = e as { message?: unknown } | null;
    const err = errors.CHAIN_UNAVAILABLE((typeof x?.message === 'string' ? x.message : 'no answer').slice(0, 160));
    err.cause = e;
    return err;
  }
  return e;
}
