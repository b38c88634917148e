/**
 * Every request and response schema of the HTTP API, defined once with TypeBox: fastify validates
 * and serialises with them and @fastify/swagger publishes the same objects in the OpenAPI document.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { ID_PATTERN, METRIC_NAMES, ReadingView, REJECT_REASONS } from '../domain/reading.ts';
import { ROLES } from './keys.ts';
import { NextCursor, PageCursor, PageLimit } from './paging.ts';

export { ReadingView };

export const ErrorResponse = Type.Object(
  { error: Type.Object({ code: Type.String(), message: Type.String() }) },
  { description: 'every error: stable code + human message' },
);

export const Id = (description: string) => Type.String({ pattern: ID_PATTERN, description });
const Address = Type.String({ pattern: '^0x[0-9a-fA-F]{40}$', description: 'EVM address' });
export const IntegerText = (description: string) => Type.String({ pattern: '^-?[0-9]+$', description });
export const Iso = (description: string) => Type.String({ format: 'date-time', description });
/** Decimals arrive as text (exact) or as JSON numbers (taken from their shortest text). */
const DecimalInput = (description: string) =>
  Type.Union([Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?$' }), Type.Number({ minimum: 0 })], { description });
/** ISO-8601 with zone, or epoch milliseconds, in a query string. */
export const TimeQuery = (description: string) =>
  Type.String({ pattern: '^([0-9]{1,15}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:?[0-9]{2}))$', description });
const Status = Type.Union([Type.Literal('active'), Type.Literal('suspended')]);
const DeviceStatus = Type.Union([Type.Literal('active'), Type.Literal('suspended'), Type.Literal('decommissioned')], {
  description: 'decommissioned is final and takes the device out of coverage from decommissionedAt on',
});
const Capacity = DecimalInput('declared capacity: kW for electricity metrics, m3/h for natural_gas, kg/h for co2_direct (default 100000, 100000, 1000000)');

export const FacilityParams = Type.Object({ id: Id('facility id') });
export const DeviceParams = Type.Object({ deviceId: Id('device id') });
export const KeyParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) });
export const SettlementParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_:.-]{1,200}$', description: 'settlement id' }) });

// --- API keys
export const ApiKeyCreate = Type.Object(
  { role: Type.Union(ROLES.map((r) => Type.Literal(r))), facilityId: Type.Optional(Id('required for role facility')) },
  { additionalProperties: false },
);
export const ApiKeyCreated = Type.Object({
  id: Type.String(),
  role: Type.String(),
  facilityId: Type.Optional(Type.String()),
  key: Type.String({ description: 'the secret, shown once' }),
});
export const ApiKeyInfoView = Type.Object({
  id: Type.String(),
  role: Type.String(),
  facilityId: Type.Optional(Type.String()),
  prefix: Type.String(),
  createdAt: Iso('created'),
  lastUsedAt: Type.Optional(Iso('last authenticated use (approximate)')),
});
export const ApiKeyList = Type.Object({ items: Type.Array(ApiKeyInfoView), next: NextCursor });
/** `?limit=&cursor=` of a list with no other filter. */
export const PageQuery = Type.Object({ limit: PageLimit, cursor: PageCursor }, { additionalProperties: false });
export type PageQuery = Static<typeof PageQuery>;

// --- facilities
export const FacilityCreate = Type.Object(
  {
    id: Id('facility id'),
    name: Type.String({ minLength: 1, maxLength: 200 }),
    owner: Address,
    baselineKgPerHour: DecimalInput('baseline emissions, kg CO2 per hour'),
    gridFactorKgPerKwh: Type.Optional(DecimalInput('grid emission factor, kg CO2 per kWh')),
    gasFactorKgPerM3: Type.Optional(DecimalInput('natural gas emission factor, kg CO2 per m3')),
  },
  { additionalProperties: false },
);
export type FacilityCreate = Static<typeof FacilityCreate>;
export const FacilityPatch = Type.Object(
  {
    status: Type.Optional(Status),
    baselineKgPerHour: Type.Optional(DecimalInput('new baseline, from the next window')),
    owner: Type.Optional({ ...Address, description: 'corrected owner; only while the facility has never settled' }),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type FacilityPatch = Static<typeof FacilityPatch>;
export const FacilityView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  owner: Type.String(),
  baselineKgPerHour: Type.String(),
  gridFactorKgPerKwh: Type.String(),
  gasFactorKgPerM3: Type.String(),
  status: Status,
  createdAt: Iso('registered'),
  settlementStatus: Type.Optional(
    Type.Union([Type.Literal('ok'), Type.Literal('blocked')], { description: 'blocked: the chain refuses its settlement (see settlementBlocked); retried with backoff' }),
  ),
  settlementBlocked: Type.Optional(
    Type.Object({
      reason: Type.String(),
      since: Iso('blocked since'),
      attempts: Type.Integer(),
      nextAttemptAt: Iso('the oracle tries again from then on'),
    }),
  ),
  chain: Type.Optional(
    Type.Object({ synced: Type.Boolean(), message: Type.Optional(Type.String()) }, { description: 'outcome of the on-chain write of this request' }),
  ),
});
export const FacilityList = Type.Object({ items: Type.Array(FacilityView), next: NextCursor }, { description: 'newest registration first' });

// --- devices
const PublicKey = Type.String({
  maxLength: 128,
  description: 'Ed25519 public key, 32 bytes as 64 hex digits or base64; the device then signs every reading (SPEC "Device signatures")',
});
export const DeviceCreate = Type.Object(
  {
    deviceId: Id('device id, also the MQTT username'),
    kind: Type.Optional(Type.String({ pattern: ID_PATTERN })),
    capacity: Type.Optional(Capacity),
    reportingIntervalSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400, description: 'declared reporting interval (default 60)' })),
    publicKey: Type.Optional(PublicKey),
  },
  { additionalProperties: false },
);
const DeviceKeyChain = Type.Optional(
  Type.Object(
    { synced: Type.Boolean(), message: Type.Optional(Type.String()) },
    { description: "outcome of recording this request's public key on chain (the regulator's DeviceKeySet); when not synced, repeat the request: the oracle records only a device's first key" },
  ),
);
export const DeviceCredentialsView = Type.Object({
  deviceId: Type.String(),
  facilityId: Type.String(),
  username: Type.String(),
  password: Type.String({ description: 'MQTT secret, shown once' }),
  chain: DeviceKeyChain,
});
export const DeviceView = Type.Object({
  deviceId: Type.String(),
  facilityId: Type.String(),
  kind: Type.String(),
  status: DeviceStatus,
  capacity: Type.Optional(Type.String({ description: 'declared capacity (absent: the per-metric defaults)' })),
  reportingIntervalSeconds: Type.Integer(),
  createdAt: Iso('registered'),
  decommissionedAt: Type.Optional(Iso('when it was decommissioned')),
  decommissionReason: Type.Optional(Type.String()),
  online: Type.Boolean(),
  lastSeenAt: Type.Optional(Iso('last connect/disconnect')),
  publicKey: Type.Optional(Type.String({ description: 'Ed25519 public key (64 lowercase hex): the device signs every reading' })),
  password: Type.Optional(Type.String({ description: 'new MQTT secret after rotateSecret, shown once' })),
  chain: DeviceKeyChain,
});
export const DeviceList = Type.Object({ items: Type.Array(DeviceView), next: NextCursor }, { description: 'newest registration first' });
export const DevicePatch = Type.Object(
  {
    status: Type.Optional(DeviceStatus),
    reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500, description: 'required with status decommissioned' })),
    capacity: Type.Optional(Capacity),
    rotateSecret: Type.Optional(Type.Literal(true)),
    publicKey: Type.Optional({ ...PublicKey, description: 'sets or rotates the Ed25519 public key; readings are verified with it from the next ingest batch' }),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type DevicePatch = Static<typeof DevicePatch>;

// --- readings and rejections
export const ReadingsQuery = Type.Object(
  {
    metric: Type.Optional(Type.Union(METRIC_NAMES.map((m) => Type.Literal(m)))),
    deviceId: Type.Optional(Id('only this device')),
    from: Type.Optional(TimeQuery('ts >= from (ISO or epoch ms)')),
    to: Type.Optional(TimeQuery('ts < to (ISO or epoch ms)')),
    limit: PageLimit,
    cursor: PageCursor,
  },
  { additionalProperties: false },
);
export type ReadingsQuery = Static<typeof ReadingsQuery>;
export const ReadingList = Type.Object({ items: Type.Array(ReadingView), next: NextCursor }, { description: 'newest first (ts, then device id, then seq)' });
export const ReadingParams = Type.Object({
  id: Id('facility id'),
  deviceId: Id('device id'),
  seq: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'the reading\'s seq' }),
});
export const ReadingDetail = Type.Object({
  reading: ReadingView,
  settlement: Type.Union(
    [
      Type.Object({
        id: Type.String({ description: 'the settlement that counted the reading (its proof: GET /v1/settlements/{id}/proof?deviceId=&seq=)' }),
        windowStart: Iso('its window start'),
        windowEnd: Iso('its window end (exclusive)'),
        late: Type.Boolean({ description: 'counted after its own window' }),
      }),
      Type.Null(),
    ],
    { description: 'null while no confirmed settlement has counted it yet' },
  ),
});
export const RejectionsQuery = Type.Object({ limit: PageLimit, cursor: PageCursor }, { additionalProperties: false });
export const RejectionView = Type.Object({
  deviceId: Type.String(),
  receivedAt: Iso('when it was refused'),
  reason: Type.Union(REJECT_REASONS.map((r) => Type.Literal(r))),
  detail: Type.Optional(Type.String()),
  payload: Type.String(),
  count: Type.Optional(Type.Integer({ minimum: 2, description: 'rejections of this device with this reason in this minute (absent: 1); detail and payload are the first one' })),
  lastReceivedAt: Type.Optional(Iso('when the last of `count` was refused')),
});
export const RejectionList = Type.Object({ items: Type.Array(RejectionView), next: NextCursor }, { description: 'newest first' });

// --- per-window figures (what a regulator reads: the dashboard's charts)
export const WindowsQuery = Type.Object(
  {
    from: Type.Optional(TimeQuery('first window: the one containing from (ISO or epoch ms; default: 48 windows before to)')),
    to: Type.Optional(TimeQuery('windows starting before to (ISO or epoch ms; default: now)')),
  },
  { additionalProperties: false },
);
export type WindowsQuery = Static<typeof WindowsQuery>;
const Kg = (description: string) => Type.String({ pattern: '^-?[0-9]+(\\.[0-9]+)?$', description: `${description}, kg CO2e (exact decimal)` });
const Quantity = (description: string) => Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?$', description });
const MetricTotalsView = Type.Object(
  {
    electricity_import: Quantity('kWh'),
    electricity_export: Quantity('kWh'),
    renewable_generation: Quantity('kWh (reported only)'),
    natural_gas: Quantity('m3'),
    co2_direct: Quantity('kg'),
  },
  { description: 'what the readings add up to in the window, per metric, normalised units (register increases and interval quantities)' },
);
export const WindowFiguresView = Type.Object({
  windowStart: Iso('window start'),
  windowEnd: Iso('window end (exclusive)'),
  settled: Type.Boolean({ description: 'a confirmed settlement exists: the figures are its record' }),
  settlementId: Type.Union([Type.String(), Type.Null()], { description: 'the settlement (GET /v1/settlements/{id}), null while unsettled' }),
  open: Type.Boolean({ description: 'the window has not ended yet: its figures so far' }),
  complete: Type.Boolean({ description: 'coverage: an incomplete window never mints (net capped at 0)' }),
  emissionsKg: Type.Object(
    {
      gridImport: Kg('electricity_import x grid factor'),
      gas: Kg('natural_gas x gas factor'),
      direct: Kg('co2_direct as measured'),
      exportCredit: Kg('electricity_export x grid factor, subtracted from the actual'),
    },
    { description: 'emissions by source: actualKg = gridImport + gas + direct - exportCredit' },
  ),
  actualKg: Kg('actual emissions'),
  baselineKg: Kg('baseline of the window'),
  netGrams: IntegerText('the settled net, or what the oracle would settle with the readings stored now (provisional)'),
  totals: MetricTotalsView,
  devices: Type.Array(
    Type.Object({
      deviceId: Type.String(),
      status: Type.String({ description: "coverage verdict ('ok', 'silent', 'no_reading_in_window', …)" }),
      totals: MetricTotalsView,
    }),
    { description: 'consumption per device (for a settled window, recomputed from the stored readings with its recorded inputs)' },
  ),
  recomputedMatches: Type.Optional(Type.Boolean({ description: 'settled windows: recomputing from the stored readings still gives the recorded net and totals' })),
});
export const WindowList = Type.Object(
  {
    facilityId: Type.String(),
    windowSeconds: Type.Integer(),
    maxWindows: Type.Integer({ description: 'the most windows one request covers' }),
    items: Type.Array(WindowFiguresView, { description: 'oldest first, from the facility\'s first window, up to the window in progress' }),
  },
);

// --- credits
export const BalanceView = Type.Object({
  facilityId: Type.String(),
  owner: Type.String(),
  balanceGrams: IntegerText("what the owner holds of the facility's batches, grams CO2e (summed over vintages)"),
  mintedGrams: IntegerText("issued in the facility's batches, total"),
  burnedGrams: IntegerText("burned from the facility's batches for negative nets, total"),
  retiredGrams: IntegerText("retired from the facility's batches by any holder, total"),
  deficitGrams: IntegerText('outstanding deficit'),
  balanceTonnes: Type.String({ description: 'balanceGrams in tCO2e (decimal text)' }),
  suspended: Type.Boolean(),
});

export const SettlementsQuery = Type.Object(
  {
    facilityId: Type.Optional(Id('only this facility')),
    from: Type.Optional(TimeQuery('windowStart >= from')),
    to: Type.Optional(TimeQuery('windowStart < to')),
    limit: PageLimit,
    cursor: PageCursor,
  },
  { additionalProperties: false },
);
export type SettlementsQuery = Static<typeof SettlementsQuery>;
export const SettlementView = Type.Object({
  id: Type.String(),
  facilityId: Type.String(),
  windowStart: Iso('window start'),
  windowEnd: Iso('window end (exclusive)'),
  complete: Type.Boolean(),
  netGrams: IntegerText('net of the window'),
  mintedGrams: IntegerText('minted'),
  burnedGrams: IntegerText('burned'),
  deficitGrams: IntegerText('the facility\'s deficit after this settlement (= deficitAfterGrams; the chain\'s WindowSettled deficitAfter)'),
  deficitAddedGrams: IntegerText('what this window added to the deficit: the part of a negative net the balance could not cover (-netGrams - burnedGrams), else 0'),
  deficitPaidGrams: IntegerText('what this window paid down of the deficit: the part of a positive net not minted (netGrams - mintedGrams), else 0'),
  deficitAfterGrams: IntegerText('the facility\'s outstanding deficit after this settlement'),
  evidenceRoot: Type.String({ description: 'Merkle root of the evidence' }),
  txHash: Type.Union([Type.String(), Type.Null()]),
  signatures: Type.Optional(
    Type.Object(
      {
        devices: Type.Integer({ description: 'devices whose readings the settlement counted' }),
        signed: Type.Integer({ description: 'of those, devices whose counted readings are signed' }),
        chainsUnbroken: Type.Boolean({ description: 'every signed device\'s hash chain is unbroken over the readings counted' }),
        broken: Type.Array(Type.String(), { description: 'devices whose hash chain is broken' }),
      },
      { description: 'device signatures over the readings counted (settlements from methodology mrv-signed-3 on)' },
    ),
  ),
  bundleUrl: Type.String({ description: 'the audit bundle: GET it and run `npm run audit -- bundle.json --rpc URL --ledger 0x…`' }),
  corrections: Type.Optional(
    Type.Array(
      Type.Object({ id: Type.String(), seq: Type.Integer(), state: Type.String(), netGrams: IntegerText('the net after it'), deltaGrams: IntegerText('its difference') }),
      { description: 'corrections of this window (voided readings), oldest first: the last one\'s netGrams is the window\'s net now (GET /v1/corrections/{id})' },
    ),
  ),
});
export const SettlementList = Type.Object({ items: Type.Array(SettlementView), next: NextCursor }, { description: 'newest window first' });
const Loose = Type.Record(Type.String(), Type.Unknown());
export const VerifyView = Type.Object({
  match: Type.Boolean({ description: 'recomputed root and amount equal what the chain recorded' }),
  onChain: Type.Union([Loose, Type.Null()], { description: 'from the WindowSettled event; null if the chain has no such settlement' }),
  recomputed: Loose,
  recorded: Type.Optional(Loose),
});
export const ProofQuery = Type.Object(
  { deviceId: Id('device of the reading'), seq: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }) },
  { additionalProperties: false },
);
export const ProofView = Type.Object({
  root: Type.String(),
  leaf: Type.Unknown({ description: 'leaf values, as hashed by StandardMerkleTree' }),
  leafEncoding: Type.Optional(Type.Array(Type.String())),
  proof: Type.Array(Type.String()),
});

export const RetirementsQuery = Type.Object(
  { facilityId: Type.Optional(Id('only this facility')), account: Type.Optional(Address), limit: PageLimit, cursor: PageCursor },
  { additionalProperties: false },
);
export const BatchesQuery = Type.Object({ facilityId: Id('the facility') }, { additionalProperties: false });
export const BatchView = Type.Object({
  id: Type.String({ description: 'ERC-1155 token id (decimal text)' }),
  facilityId: Type.String(),
  vintage: Type.String({ description: 'UTC month of the windows, YYYY-MM' }),
  issuedGrams: IntegerText('issued (minted) in this batch'),
  retiredGrams: IntegerText('retired from this batch, by any holder'),
  burnedGrams: IntegerText('burned from the owner for negative nets'),
  supplyGrams: IntegerText('in existence: issued - retired - burned'),
  ownerBalanceGrams: IntegerText("held by the facility's owner"),
  serialPrefix: Type.String({ description: 'serials of this batch are `{serialPrefix}{n}`, n from 1 in issue order' }),
});
export const BatchList = Type.Object({ items: Type.Array(BatchView) }, { description: 'oldest vintage first' });
export const AccountParams = Type.Object({ address: Address }, { additionalProperties: false });
export const HoldingsView = Type.Object({
  account: Type.String(),
  totalGrams: IntegerText('held over every batch'),
  items: Type.Array(Type.Intersect([BatchView, Type.Object({ balanceGrams: IntegerText('held by the account') })])),
});
export const RetiredPartView = Type.Object({
  batchId: Type.String(),
  facilityId: Type.String(),
  vintage: Type.String({ description: 'YYYY-MM' }),
  amountGrams: IntegerText('retired from this batch'),
  firstSerial: Type.String({ description: 'first serial retired, `{facilityId}-{YYYY-MM}-{n}`' }),
  lastSerial: Type.String({ description: 'last serial retired' }),
});
export const RetirementView = Type.Object({
  id: Type.String(),
  account: Type.String(),
  facilityIds: Type.Array(Type.String(), { description: 'facilities whose batches it retired' }),
  parts: Type.Array(RetiredPartView, { description: 'per batch: amount and serial range' }),
  amountGrams: IntegerText('retired grams'),
  amountTonnes: Type.String(),
  beneficiary: Type.String(),
  reason: Type.String(),
  retiredAt: Type.Optional(Iso('block time')),
  txHash: Type.Optional(Type.String()),
});
export const RetirementParams = Type.Object({ id: Type.String({ pattern: '^[1-9][0-9]{0,30}$' }) }, { additionalProperties: false });
export const CertificateSettlement = Type.Object({
  facilityId: Type.String(),
  windowStart: Iso('window start'),
  windowEnd: Iso('window end'),
  mintedGrams: IntegerText('minted by this settlement'),
  firstSerial: Type.String(),
  lastSerial: Type.String(),
  evidenceRoot: Type.String(),
  txHash: Type.String(),
  verifyUrl: Type.String({ description: 'GET it to recompute the settlement from the stored readings' }),
  bundleUrl: Type.String({ description: 'the audit bundle, checked offline by `npm run audit`' }),
});
export const CertificateView = Type.Intersect([
  RetirementView,
  Type.Object({ settlements: Type.Array(CertificateSettlement, { description: 'the settlements that minted the retired serials' }) }),
]);
export const RetirementList = Type.Object({ items: Type.Array(RetirementView), next: NextCursor }, { description: 'newest first' });
export const SignedRetirementBody = Type.Object(
  {
    holder: Address,
    batchIds: Type.Array(Type.String({ pattern: '^[1-9][0-9]{0,77}$' }), { minItems: 1, maxItems: 32, description: 'token ids of the batches retired from' }),
    amounts: Type.Array(Type.String({ pattern: '^[1-9][0-9]{0,19}$' }), { minItems: 1, maxItems: 32, description: 'grams of each batch (same length as batchIds)' }),
    beneficiary: Type.String({ minLength: 1, maxLength: 256, description: 'at most 256 bytes on-chain' }),
    reason: Type.String({ maxLength: 256, description: 'at most 256 bytes on-chain' }),
    nonce: Type.String({ pattern: '^[0-9]{1,78}$' }),
    deadline: Type.String({ pattern: '^[0-9]{1,12}$', description: 'UNIX seconds' }),
    signature: Type.String({ pattern: '^0x[0-9a-fA-F]{130}$', description: 'EIP-712 signature by holder' }),
  },
  { additionalProperties: false },
);
export const RetirementSubmitted = Type.Object({
  txHash: Type.String(),
  id: Type.Optional(Type.String()),
  /** The signed request had already been submitted (by anyone); this is the retirement it produced. */
  alreadySubmitted: Type.Optional(Type.Boolean()),
});

// --- ops
export const HealthView = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
  backends: Type.Record(
    Type.String(),
    Type.Object({ ok: Type.Boolean(), configured: Type.Boolean(), detail: Type.Optional(Type.String()), blockNumber: Type.Optional(Type.Integer()) }),
  ),
  settlement: Type.Optional(
    Type.Object(
      {
        windowSeconds: Type.Integer({ description: 'settlement window length' }),
        graceSeconds: Type.Optional(Type.Integer({ description: 'how long after a window closes it is settled' })),
      },
      { description: 'the windows this stack settles (simulators and tools read their defaults here)' },
    ),
  ),
});

/** Error responses a route can produce, for the OpenAPI document. */
export function errorResponses(...codes: number[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {};
  for (const c of codes) out[c] = ErrorResponse;
  return out;
}
