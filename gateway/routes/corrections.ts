/**
 * Voids and corrections (SPEC "Methodology", corrections; docs/API.md "Corrections"):
 * `POST /v1/devices/{deviceId}/voids` (regulator) voids a device's readings over [from, to) and answers
 * 201 with the correction settlements it caused; `GET /v1/corrections?facilityId=` lists them (a
 * facility key its own); `GET /v1/corrections/{id}`, `/verify` and `/proof` work for corrections as
 * the settlement routes do for settlements. Backed by `deps.corrections` (503 without it).
 */
import type { FastifyInstance } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { ALL_ROLES, assertFacilityAccess, principalOf, requireRole, scopedFacility } from '../auth.ts';
import { errors, isError } from '../../domain/errors.ts';
import type { GatewayCorrections } from '../deps.ts';
import type { Correction, ReadingVoid } from '../../store/types.ts';
import { DeviceParams, ProofQuery, ProofView, VerifyView, errorResponses } from '../schemas.ts';
import { CorrectionList, CorrectionParams, CorrectionView, CorrectionsQuery, MAX_VOID_REASON, VoidBody, VoidResult } from '../correction-schemas.ts';
import { iso, jsonSafe } from '../format.ts';

export function voidView(v: ReadingVoid) {
  return {
    id: v.id,
    facilityId: v.facilityId,
    deviceId: v.deviceId,
    from: iso(v.from),
    to: iso(v.to),
    reason: v.reason,
    voidedAt: iso(v.at),
    chainVoidId: v.chainVoidId ?? null,
  };
}

export function correctionView(c: Correction) {
  return {
    id: c.id,
    settlementId: c.settlementId,
    seq: c.seq,
    facilityId: c.facilityId,
    windowStart: iso(c.windowStart),
    windowEnd: iso(c.windowEnd),
    state: c.state,
    voidIds: c.voidIds,
    reason: c.reason,
    complete: c.complete,
    prevNetGrams: c.prevNetGrams,
    netGrams: c.netGrams,
    deltaGrams: c.deltaGrams,
    mintedGrams: c.mintedGrams,
    burnedGrams: c.burnedGrams,
    deficitGrams: c.deficitGrams,
    evidenceRoot: c.evidenceRoot,
    txHash: c.txHash,
    verifyUrl: `/v1/corrections/${encodeURIComponent(c.id)}/verify`,
  };
}

/**
 * The corrections void `voidId` caused: those this plan recorded, and those another planner recorded
 * for it first (the oracle's run after each settlement, in this process or another, plans the same
 * voids: it may get there between the void's insert and this plan, or during it, when the store refuses
 * the later writer with CORRECTION_RACED; planned again, ours finds the other's records). The void is
 * recorded (on chain too) by then, so a race is no failure of the request. Oldest window first.
 */
async function correctionsCausedBy(corrections: GatewayCorrections, facilityId: string, voidId: number): Promise<Correction[]> {
  let made: Correction[];
  try {
    made = await corrections.corrector.plan(facilityId);
  } catch (err) {
    if (!isError(err, errors.CORRECTION_RACED)) throw err;
    made = await corrections.corrector.plan(facilityId);
  }
  const byId = new Map(made.map((c) => [c.id, c]));
  for (const c of await corrections.records.listCorrections({ facilityId, limit: 10_000 })) if (c.voidIds.includes(voidId) && !byId.has(c.id)) byId.set(c.id, c);
  return [...byId.values()].sort((a, b) => a.windowStart - b.windowStart || a.seq - b.seq);
}

/** Epoch ms of a body time: an integer, its text, or ISO-8601 with a zone. */
function bodyTime(v: string | number, field: string): number {
  const ms = typeof v === 'number' ? v : /^[0-9]+$/.test(v) ? Number(v) : Date.parse(v);
  if (!Number.isSafeInteger(ms) || ms < 0) throw errors.VALIDATION(`body/${field} is not a time`);
  return ms;
}

export function registerCorrectionRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const need = () => {
    const c = ctx.deps.corrections;
    if (!c) throw errors.BACKEND_UNAVAILABLE('the correction records');
    return c;
  };

  app.post<{ Params: Static<typeof DeviceParams>; Body: VoidBody }>(
    '/v1/devices/:deviceId/voids',
    {
      preValidation: requireRole(['regulator']),
      schema: {
        tags: ['corrections'],
        summary: "Void a device's readings over [from, to) (regulator): kept, flagged, excluded; answers the correction settlements it caused",
        params: DeviceParams,
        body: VoidBody,
        response: { 201: VoidResult, ...errorResponses(400, 401, 403, 404, 409, 429, 503) },
      },
    },
    async (request, reply) => {
      const corrections = need();
      const readings = ctx.need('readings');
      const device = ctx.deps.registry.getDevice(request.params.deviceId);
      if (!device) throw errors.DEVICE_NOT_FOUND(request.params.deviceId);
      const from = bodyTime(request.body.from, 'from');
      const to = bodyTime(request.body.to, 'to');
      if (from >= to) throw errors.VALIDATION('body/to must be after body/from');
      const reason = request.body.reason.trim();
      if (!reason) throw errors.VALIDATION('body/reason must not be blank');
      if (Buffer.byteLength(reason, 'utf8') > MAX_VOID_REASON) throw errors.VALIDATION(`body/reason is longer than ${MAX_VOID_REASON} bytes`);
      const any = await readings.list({ facilityId: device.facilityId, deviceId: device.deviceId, from, to, limit: 1 });
      if (any.length === 0) throw errors.VOID_EMPTY(device.deviceId, iso(from), iso(to));
      // The chain first: a void the chain does not hold authorises no correction there.
      let chain: { id: number; settledBefore: number } | undefined;
      if (corrections.port) chain = await corrections.port.voidReadings(device.facilityId, device.deviceId, from, to, reason);
      const v = await corrections.records.addVoid({
        facilityId: device.facilityId,
        deviceId: device.deviceId,
        from,
        to,
        reason,
        by: principalOf(request).keyId,
        at: ctx.now(),
        ...(chain ? { chainVoidId: chain.id, settledBefore: chain.settledBefore } : {}),
      });
      const made = await correctionsCausedBy(corrections, device.facilityId, v.id);
      reply.code(201);
      return { void: voidView(v), corrections: made.map(correctionView) };
    },
  );

  app.get<{ Querystring: Static<typeof CorrectionsQuery> }>(
    '/v1/corrections',
    {
      preValidation: requireRole(ALL_ROLES),
      schema: {
        tags: ['corrections'],
        summary: 'Correction settlements, oldest window first (a facility key sees its own only)',
        querystring: CorrectionsQuery,
        response: { 200: CorrectionList, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const facilityId = scopedFacility(principalOf(request), request.query.facilityId);
      return { items: (await need().records.listCorrections(facilityId ? { facilityId } : {})).map(correctionView) };
    },
  );

  async function load(request: { params: { id: string } } & Parameters<typeof principalOf>[0]): Promise<Correction> {
    const c = await need().records.getCorrection(request.params.id);
    if (!c) throw errors.CORRECTION_NOT_FOUND(request.params.id);
    assertFacilityAccess(principalOf(request), c.facilityId);
    return c;
  }

  app.get<{ Params: Static<typeof CorrectionParams> }>(
    '/v1/corrections/:id',
    {
      preValidation: requireRole(ALL_ROLES),
      schema: { tags: ['corrections'], summary: 'One correction', params: CorrectionParams, response: { 200: CorrectionView, ...errorResponses(400, 401, 403, 404, 429, 503) } },
    },
    async (request) => correctionView(await load(request)),
  );

  app.get<{ Params: Static<typeof CorrectionParams> }>(
    '/v1/corrections/:id/verify',
    {
      preValidation: requireRole(ALL_ROLES),
      schema: {
        tags: ['corrections'],
        summary: "Recompute the correction's evidence root and delta from the stored readings and compare them with the chain",
        params: CorrectionParams,
        response: { 200: VerifyView, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const c = await load(request);
      const r = await need().audit.verify(c.id);
      return { match: r.match, onChain: jsonSafe(r.onChain), recomputed: jsonSafe(r.recomputed), recorded: jsonSafe(r.recorded) };
    },
  );

  app.get<{ Params: Static<typeof CorrectionParams>; Querystring: Static<typeof ProofQuery> }>(
    '/v1/corrections/:id/proof',
    {
      preValidation: requireRole(ALL_ROLES),
      schema: {
        tags: ['corrections'],
        summary: "Merkle proof that a reading is in the correction's evidence: used (`reading` leaf) or left out (`voided` leaf)",
        params: CorrectionParams,
        querystring: ProofQuery,
        response: { 200: ProofView, ...errorResponses(400, 401, 403, 404, 409, 429, 503) },
      },
    },
    async (request) => {
      const c = await load(request);
      const { deviceId, seq } = request.query;
      const r = await need().audit.proof(c.id, deviceId, seq);
      if (!r) throw errors.PROOF_NOT_FOUND(deviceId, seq);
      return jsonSafe(r);
    },
  );
}
