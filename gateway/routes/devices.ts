/**
 * Devices: register (MQTT credentials shown once, declared capacity and reporting interval), list,
 * suspend/reactivate/decommission, change capacity, set or rotate the Ed25519 public key, rotate the
 * secret (regulator/admin only).
 * Rotation, suspension and decommissioning cut the device's live MQTT session at once through the broker.
 */
import type { FastifyInstance } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { ALL_ROLES, STAFF, assertFacilityAccess, principalOf, requireRole } from '../auth.ts';
import { errors } from '../../domain/errors.ts';
import type { Device } from '../../store/types.ts';
import { DeviceCreate, DeviceCredentialsView, DeviceList, DeviceParams, DevicePatch, DeviceView, FacilityParams, PageQuery, errorResponses } from '../schemas.ts';
import { DEFAULT_PAGE, decodeCursor, pageOf } from '../paging.ts';
import { iso } from '../format.ts';
import { registryWriter } from '../../oracle/chain-sync.ts';

export function deviceView(d: Device) {
  return {
    deviceId: d.deviceId,
    facilityId: d.facilityId,
    kind: d.kind,
    status: d.status,
    ...(d.capacity !== undefined ? { capacity: d.capacity } : {}),
    reportingIntervalSeconds: d.reportingIntervalSeconds,
    createdAt: iso(d.createdAt),
    ...(d.decommissionedAt !== undefined ? { decommissionedAt: iso(d.decommissionedAt), decommissionReason: d.decommissionReason ?? '' } : {}),
    online: Boolean(d.online),
    ...(d.lastSeenAt ? { lastSeenAt: iso(d.lastSeenAt) } : {}),
    ...(d.publicKey !== undefined ? { publicKey: d.publicKey } : {}),
  };
}

export function registerDeviceRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { registry } = ctx.deps;
  /** On-chain writes go through oracle/chain-sync.ts (the one writer); the oracle records only a device's first key. */
  const writer = ctx.deps.ledger ? registryWriter(ctx.deps.ledger, registry, ctx.windowMs) : undefined;

  /**
   * Records the key the regulator just set on chain, at once: the oracle's reconcile never replaces a
   * key the chain holds (docs/SECURITY.md "Device keys on chain"), so a rotation that fails here is
   * reported to the caller, who repeats the request.
   */
  async function keyOnChain(deviceId: string, publicKey: string): Promise<{ synced: boolean; message?: string } | undefined> {
    if (!writer) return { synced: false, message: 'no chain configured in this process' };
    try {
      if (!(await writer.pushDeviceKey(deviceId, publicKey))) return undefined;
      return { synced: true };
    } catch (err) {
      ctx.log.warn({ err, deviceId }, 'device key not recorded on chain');
      return { synced: false, message: `device key not confirmed on-chain yet: ${(err as Error).message.slice(0, 160)}` };
    }
  }

  async function disconnect(deviceId: string, why: string): Promise<void> {
    if (!ctx.deps.broker) {
      ctx.log.info({ deviceId, why }, 'no broker in this process: the broker closes a live session at its next registry poll (MQTT_REGISTRY_POLL_MS)');
      return;
    }
    await ctx.deps.broker.disconnectDevice(deviceId);
  }

  app.post<{ Params: Static<typeof FacilityParams>; Body: Static<typeof DeviceCreate> }>(
    '/v1/facilities/:id/devices',
    {
      preValidation: requireRole(STAFF),
      schema: {
        tags: ['devices'],
        summary: 'Register a device (admin, regulator); the MQTT password is in this response only',
        params: FacilityParams,
        body: DeviceCreate,
        response: { 201: DeviceCredentialsView, ...errorResponses(400, 401, 403, 404, 409, 429) },
      },
    },
    async (request, reply) => {
      const facilityId = request.params.id;
      if (!registry.getFacility(facilityId)) throw errors.FACILITY_NOT_FOUND(facilityId);
      const { deviceId, kind, capacity, reportingIntervalSeconds, publicKey } = request.body;
      if (registry.getDevice(deviceId)) throw errors.DEVICE_EXISTS(deviceId);
      const { device, password } = await registry.createDevice(facilityId, deviceId, kind ?? 'meter', {
        ...(capacity !== undefined ? { capacity: String(capacity) } : {}),
        ...(reportingIntervalSeconds !== undefined ? { reportingIntervalSeconds } : {}),
        ...(publicKey !== undefined ? { publicKey } : {}),
      });
      const chain = device.publicKey !== undefined ? await keyOnChain(deviceId, device.publicKey) : undefined;
      request.log.info({ facilityId, deviceId, publicKey: device.publicKey, chain: chain?.synced, by: request.principal?.keyId }, 'device registered');
      return reply.code(201).send({ deviceId: device.deviceId, facilityId: device.facilityId, username: device.deviceId, password, ...(chain ? { chain } : {}) });
    },
  );

  app.get<{ Params: Static<typeof FacilityParams>; Querystring: PageQuery }>(
    '/v1/facilities/:id/devices',
    {
      preValidation: requireRole(ALL_ROLES, { scope: 'path' }),
      schema: {
        tags: ['devices'],
        summary: "A facility's devices, newest registration first, paged with limit and cursor",
        params: FacilityParams,
        querystring: PageQuery,
        response: { 200: DeviceList, ...errorResponses(400, 401, 403, 404, 429) },
      },
    },
    async (request) => {
      if (!registry.getFacility(request.params.id)) throw errors.FACILITY_NOT_FOUND(request.params.id);
      const all = registry.listDevices(request.params.id);
      const page = pageOf(all, (d) => [d.createdAt, d.deviceId], request.query.limit ?? DEFAULT_PAGE, decodeCursor(request.query.cursor, 'ns'));
      return { items: page.items.map(deviceView), ...(page.next ? { next: page.next } : {}) };
    },
  );

  app.patch<{ Params: Static<typeof DeviceParams>; Body: DevicePatch }>(
    '/v1/devices/:deviceId',
    {
      // Status, capacity and the device's secret are the regulator's (admin's): a facility key that could
      // change them could switch its own meters off, widen what they may report or publish as them.
      preValidation: requireRole(STAFF),
      schema: {
        tags: ['devices'],
        summary: 'Suspend/reactivate/decommission, declare capacity, set/rotate the public key, rotate the MQTT secret (admin, regulator)',
        description:
          'Suspension, decommissioning and rotation disconnect the device (at once when the broker runs in this process, otherwise within MQTT_REGISTRY_POLL_MS); ' +
          'after rotation the old secret no longer connects. Decommissioning needs a reason and is final. A facility key gets 403.',
        params: DeviceParams,
        body: DevicePatch,
        response: { 200: DeviceView, ...errorResponses(400, 401, 403, 404, 409, 429) },
      },
    },
    async (request) => {
      const p = principalOf(request);
      const { deviceId } = request.params;
      const d = registry.getDevice(deviceId);
      if (!d) throw errors.DEVICE_NOT_FOUND(deviceId);
      assertFacilityAccess(p, d.facilityId);
      const { status, reason, capacity, publicKey } = request.body;
      let device = d;
      let password: string | undefined;
      if (status !== undefined || capacity !== undefined || reason !== undefined || publicKey !== undefined) {
        device = await registry.updateDevice(deviceId, {
          ...(status !== undefined ? { status } : {}),
          ...(reason !== undefined ? { reason } : {}),
          ...(capacity !== undefined ? { capacity: String(capacity) } : {}),
          ...(publicKey !== undefined ? { publicKey } : {}),
        });
      }
      if (request.body.rotateSecret) password = await registry.rotateSecret(deviceId);
      if (request.body.rotateSecret || (status !== undefined && status !== 'active')) {
        await disconnect(deviceId, request.body.rotateSecret ? 'secret rotated' : status ?? '');
      }
      // Also when the key did not change: repeating the request is how a failed chain write is retried.
      const chain = publicKey !== undefined && device.publicKey !== undefined ? await keyOnChain(deviceId, device.publicKey) : undefined;
      request.log.info({ deviceId, status, capacity, publicKey: publicKey === undefined ? undefined : device.publicKey, chain: chain?.synced, rotated: !!password, by: p.keyId }, 'device updated');
      return { ...deviceView(registry.getDevice(deviceId) ?? device), ...(password ? { password } : {}), ...(chain ? { chain } : {}) };
    },
  );
}
