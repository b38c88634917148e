/**
 * Retirements: the list from the chain, and a relay that submits an EIP-712 retirement signed by
 * the credit holder's own key. The gateway pays gas only; it never holds a factory's key.
 */
import type { FastifyInstance } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { ALL_ROLES, principalOf, requireRole, scopedFacility } from '../auth.ts';
import { DomainError, errors, isError } from '../../domain/errors.ts';
import { describeChainError } from '../../contracts/client/errors.ts';
import { asChainError } from '../errors.ts';
import { CertificateView, RetirementList, RetirementParams, RetirementSubmitted, RetirementsQuery, SignedRetirementBody, errorResponses } from '../schemas.ts';
import { gramsText } from '../format.ts';
import { buildCertificate, CERTIFICATE_CSP, certificateHtml, retirementJson } from '../certificate.ts';
import { DEFAULT_PAGE, decodeCursor, pageOf } from '../paging.ts';

export function registerRetirementRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.get<{ Querystring: Static<typeof RetirementsQuery> }>(
    '/v1/retirements',
    {
      preValidation: requireRole(ALL_ROLES),
      schema: {
        tags: ['credits'],
        summary: 'Retirement records on-chain, newest first, paged with limit and cursor (a facility key sees its own facility only)',
        querystring: RetirementsQuery,
        response: { 200: RetirementList, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const ledger = ctx.need('ledger');
      const facilityId = scopedFacility(principalOf(request), request.query.facilityId);
      const { account } = request.query;
      const rows = await ctx.chainCache
        .get(`retirements:${facilityId ?? ''}:${account ?? ''}`, () => ledger.retirements({ ...(facilityId ? { facilityId } : {}), ...(account ? { account } : {}) }))
        .catch((err: unknown) => {
          throw asChainError(err);
        });
      // Ids are sequential on chain: zero-padded text compares as the number does.
      const page = pageOf(rows, (r) => [gramsText(r.id).padStart(78, '0')], request.query.limit ?? DEFAULT_PAGE, decodeCursor(request.query.cursor, 's'));
      return {
        ...(page.next ? { next: page.next } : {}),
        items: page.items.map(retirementJson),
      };
    },
  );

  app.get<{ Params: Static<typeof RetirementParams> }>(
    '/v1/retirements/:id',
    {
      schema: {
        tags: ['credits'],
        summary: 'A retirement certificate, rebuilt from the chain (no auth: certificates are public, like the chain)',
        description:
          'JSON by default; a printable HTML page with `Accept: text/html`. Facility, vintage, serial ranges and amounts per batch, ' +
          'beneficiary, reason, and the settlements that minted the retired serials (evidence roots, transactions, verify links).',
        security: [],
        params: RetirementParams,
        response: { 200: CertificateView, ...errorResponses(400, 404, 429, 503) },
      },
    },
    async (request, reply) => {
      const ledger = ctx.need('ledger');
      const id = BigInt(request.params.id);
      const cert = await ctx.chainCache.get(`certificate:${id}`, () => buildCertificate(ledger, id)).catch((err: unknown) => {
        throw asChainError(err);
      });
      if (!cert) throw errors.RETIREMENT_NOT_FOUND(request.params.id);
      if (wantsHtml(request.headers.accept)) {
        return reply
          .header('content-type', 'text/html; charset=utf-8')
          .header('cache-control', 'no-cache')
          .header('content-security-policy', CERTIFICATE_CSP)
          .serializer((x: unknown) => x as string)
          .send(certificateHtml(cert));
      }
      return cert;
    },
  );

  app.post<{ Body: Static<typeof SignedRetirementBody> }>(
    '/v1/retirements',
    {
      preValidation: requireRole(ALL_ROLES),
      schema: {
        tags: ['credits'],
        summary: 'Relay a retirement signed (EIP-712) by the credit holder; a facility key may relay for its own owner address only',
        description:
          '201: relayed now. 200 with `alreadySubmitted: true`: the same signed request had already been submitted ' +
          '(by a third party who sent it first, or an earlier call): the answer is the retirement it produced. ' +
          '422: the chain refused it (bad signature, expired, balance, suspended, or its nonce used by another request).',
        body: SignedRetirementBody,
        response: { 200: RetirementSubmitted, 201: RetirementSubmitted, ...errorResponses(400, 401, 403, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const ledger = ctx.need('ledger');
      const p = principalOf(request);
      const body = request.body;
      if (p.role === 'facility') {
        const f = ctx.deps.registry.getFacility(p.facilityId!);
        if (!f || f.owner.toLowerCase() !== body.holder.toLowerCase()) {
          throw errors.FORBIDDEN("a facility key relays retirements of its own owner address only");
        }
      }
      if (body.batchIds.length !== body.amounts.length) throw errors.VALIDATION(`body/amounts must have one amount per batch id (${body.batchIds.length} ids, ${body.amounts.length} amounts)`);
      const req = {
        holder: body.holder,
        batchIds: body.batchIds.map((x) => BigInt(x)),
        amounts: body.amounts.map((x) => BigInt(x)),
        beneficiary: body.beneficiary,
        reason: body.reason,
        nonce: BigInt(body.nonce),
        deadline: Number(body.deadline),
        signature: body.signature,
      };
      let out: { txHash: string; id?: unknown };
      try {
        out = await ledger.retireWithSig(req);
      } catch (err) {
        // Someone may have submitted this very request first (anyone can relay a signed request):
        // it took place, so answer with the retirement it produced rather than a refusal.
        const done = await ledger.retirementOfRequest?.(req).catch(() => undefined);
        if (done) {
          ctx.chainCache.invalidate();
          request.log.info({ holder: body.holder, nonce: body.nonce, txHash: done.txHash, by: p.keyId }, 'retirement request had already been submitted');
          return reply.code(200).send({ txHash: done.txHash, id: gramsText(done.id), alreadySubmitted: true });
        }
        // The contracts client decodes custom errors (LEDGER_REVERTED: bad signature, expired, nonce,
        // balance, suspended): the request is at fault, not the gateway.
        if (err instanceof DomainError && isError(err, errors.LEDGER_REVERTED)) throw errors.RELAY_REJECTED(err.message.replace(/^ledger reverted: /, ''));
        if (err instanceof DomainError) throw err;
        // A revert the client could not decode is still the request's problem: said as the same
        // sentence the CLI and the oracle use (contracts/client/errors.ts), with the node's reason.
        const e = err as { shortMessage?: string; reason?: string; message?: string; code?: string };
        if (e.code === 'CALL_EXCEPTION' || e.reason || /revert/i.test(e.message ?? '')) {
          const reason = typeof e.reason === 'string' && e.reason ? ` (${e.reason.slice(0, 120)})` : '';
          throw errors.RELAY_REJECTED(`${describeChainError(err)}${reason}`.slice(0, 300));
        }
        throw asChainError(err);
      }
      ctx.chainCache.invalidate();
      request.log.info({ holder: body.holder, batchIds: body.batchIds, amounts: body.amounts, txHash: out.txHash, by: p.keyId }, 'retirement relayed');
      return reply.code(201).send({ txHash: out.txHash, ...(out.id !== undefined ? { id: gramsText(out.id as bigint) } : {}) });
    },
  );
}

/** Whether the client asked for HTML before JSON (a browser opening the certificate link). */
function wantsHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  const html = accept.indexOf('text/html');
  if (html < 0) return false;
  const json = accept.indexOf('application/json');
  return json < 0 || html < json;
}
