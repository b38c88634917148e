/**
 * Payloads of the void and correction routes (gateway/routes/corrections.ts), defined once for the
 * validation, the responses and the OpenAPI document; the shared pieces come from gateway/schemas.ts.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Id, IntegerText, Iso, TimeQuery } from './schemas.ts';

/** The longest void reason (bytes on chain; characters here, at most 256 bytes is checked by the route). */
export const MAX_VOID_REASON = 256;

/** ISO-8601 with zone, or epoch milliseconds (a JSON integer or its text). */
const TimeInput = (description: string) => Type.Union([TimeQuery(description), Type.Integer({ minimum: 0, maximum: 8_640_000_000_000_000 })], { description });

export const VoidBody = Type.Object(
  {
    from: TimeInput('first instant voided (readings with ts >= from)'),
    to: TimeInput('end of the range, exclusive (readings with ts < to); after from'),
    reason: Type.String({ minLength: 1, maxLength: MAX_VOID_REASON, description: 'why (meter found faulty, ...): 1..256 bytes' }),
  },
  { additionalProperties: false },
);
export type VoidBody = Static<typeof VoidBody>;

export const VoidView = Type.Object({
  id: Type.Integer({ description: 'the void number here' }),
  facilityId: Type.String(),
  deviceId: Type.String(),
  from: Iso('first instant voided'),
  to: Iso('end of the range (exclusive)'),
  reason: Type.String(),
  voidedAt: Iso('when it was recorded'),
  chainVoidId: Type.Union([Type.Integer(), Type.Null()], { description: "the ledger's void number (ReadingsVoided), null when no chain recorded it" }),
});

export const CorrectionView = Type.Object({
  id: Type.String({ description: '{settlementId}-c{seq}' }),
  settlementId: Type.String({ description: 'the original settlement it corrects (which stays as it was)' }),
  seq: Type.Integer({ description: "the correction's number for that window, from 1" }),
  facilityId: Type.String(),
  windowStart: Iso('window start'),
  windowEnd: Iso('window end (exclusive)'),
  state: Type.Union([Type.Literal('intent'), Type.Literal('confirmed')], { description: 'confirmed once the chain applied it' }),
  voidIds: Type.Array(Type.Integer(), { description: 'the voids behind it' }),
  reason: Type.String(),
  complete: Type.Boolean(),
  prevNetGrams: IntegerText('the window net before this correction'),
  netGrams: IntegerText('the recomputed net'),
  deltaGrams: IntegerText('netGrams - prevNetGrams: minted (> 0), burned or added to the deficit (< 0)'),
  mintedGrams: Type.Union([IntegerText('minted'), Type.Null()]),
  burnedGrams: Type.Union([IntegerText('burned'), Type.Null()]),
  deficitGrams: Type.Union([IntegerText("the facility's deficit after it"), Type.Null()]),
  evidenceRoot: Type.String({ description: "Merkle root of the correction's own evidence" }),
  txHash: Type.Union([Type.String(), Type.Null()]),
  verifyUrl: Type.String(),
});
export const CorrectionList = Type.Object({ items: Type.Array(CorrectionView) }, { description: 'oldest window first, then seq' });
export const VoidResult = Type.Object({ void: VoidView, corrections: Type.Array(CorrectionView, { description: 'the correction settlements this void caused' }) });
export const CorrectionsQuery = Type.Object({ facilityId: Type.Optional(Id('only this facility (a facility key: its own)')) }, { additionalProperties: false });
export const CorrectionParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_:.-]{1,220}$', description: 'correction id' }) });
