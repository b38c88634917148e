/**
 * Authentication (Bearer API key → principal, in onRequest, before rate limiting so the limit can be
 * per key) and authorisation (role + facility scope, in preValidation, so 401/403 come before 400).
 */
import type { FastifyInstance, FastifyRequest, preValidationHookHandler } from 'fastify';
import { errors } from '../domain/errors.ts';
import type { KeyStore, Principal, Role } from './keys.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

export function registerAuthentication(app: FastifyInstance, keys: KeyStore): void {
  app.decorateRequest('principal', null);
  app.addHook('onRequest', (request, _reply, done) => {
    const h = request.headers.authorization;
    if (h && h.length > 7 && h.slice(0, 7).toLowerCase() === 'bearer ') {
      request.principal = keys.authenticate(h.slice(7).trim()) ?? null;
    }
    done();
  });
}

/** Who may call a route; `scope: 'path'` checks the `:id` path parameter against a facility key. */
export function requireRole(roles: readonly Role[], opts: { scope?: 'path' } = {}): preValidationHookHandler {
  return (request, _reply, done) => {
    const p = request.principal;
    if (!p) return done(errors.UNAUTHENTICATED());
    if (!roles.includes(p.role)) return done(errors.FORBIDDEN(`role ${p.role} may not ${request.method} this resource`));
    if (opts.scope === 'path' && p.role === 'facility') {
      const id = (request.params as { id?: string }).id;
      if (id !== p.facilityId) return done(errors.FORBIDDEN('a facility key only reaches its own facility'));
    }
    done();
  };
}

export const ALL_ROLES: readonly Role[] = ['admin', 'regulator', 'facility'];
export const STAFF: readonly Role[] = ['admin', 'regulator'];

export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw errors.UNAUTHENTICATED();
  return request.principal;
}

/** Throws 403 unless the principal may see `facilityId`. */
export function assertFacilityAccess(p: Principal, facilityId: string): void {
  if (p.role === 'facility' && p.facilityId !== facilityId) throw errors.FORBIDDEN('a facility key only reaches its own facility');
}

/** For list queries with an optional facilityId: a facility key is pinned to its own facility. */
export function scopedFacility(p: Principal, requested: string | undefined): string | undefined {
  if (p.role !== 'facility') return requested;
  if (requested !== undefined && requested !== p.facilityId) throw errors.FORBIDDEN('a facility key only lists its own facility');
  return p.facilityId;
}
