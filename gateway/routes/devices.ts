/**
 * Devices: register (MQTT credentials shown once), list, suspend/reactivate, rotate the secret.
 * Rotation and suspension cut the device's live MQTT session at once through the broker.
 */
import type { FastifyInstance } from 'fastify';
import type { Static } from '@sinclair/typebox';
import type { GatewayContext } from '../app.ts';
import { ALL_ROLES, STAFF, assertFacilityAccess, principalOf, requireRole } from '../auth.ts';
import { errors } from '../../domain/errors.ts';
import type { Device } from '../../store/types.ts';
import { DeviceCreate, DeviceCredentialsView, DeviceList, DeviceParams, DevicePatch, DeviceView, FacilityParams, errorResponses } from '../schemas.ts';
import { iso } from '../format.ts';

export function deviceView(d: Device) {
  return {
    deviceId: d.deviceId,
    facilityId: d.facilityId,
    kind: d.kind,
    status: d.status,
    createdAt: iso(d.createdAt),
    online: Boolean(d.online),
    ...(d.lastSeenAt ? { lastSeenAt: iso(d.lastSeenAt) } : {}),
  };
}

export function registerDeviceRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  const { registry } = ctx.deps;

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
      const { deviceId, kind } = request.body;
      if (registry.getDevice(deviceId)) throw errors.CONFLICT(`device ${deviceId} already exists`);
      const { device, password } = registry.createDevice(facilityId, deviceId, kind ?? 'meter');
      request.log.info({ facilityId, deviceId, by: request.principal?.keyId }, 'device registered');
      return reply.code(201).send({ deviceId: device.deviceId, facilityId: device.facilityId, username: device.deviceId, password });
    },
  );

  app.get<{ Params: Static<typeof FacilityParams> }>(
    '/v1/facilities/:id/devices',
    {
      preValidation: requireRole(ALL_ROLES, { scope: 'path' }),
      schema: { tags: ['devices'], summary: "A facility's devices", params: FacilityParams, response: { 200: DeviceList, ...errorResponses(400, 401, 403, 404, 429) } },
    },
    async (request) => {
      if (!registry.getFacility(request.params.id)) throw errors.FACILITY_NOT_FOUND(request.params.id);
      return { items: registry.listDevices(request.params.id).map(deviceView) };
    },
  );

  app.patch<{ Params: Static<typeof DeviceParams>; Body: DevicePatch }>(
    '/v1/devices/:deviceId',
    {
      // Regulator/admin only: a facility that could rotate its meter's secret could then publish as the
      // meter, and one that could suspend it would switch its own measurement off.
      preValidation: requireRole(STAFF),
      schema: {
        tags: ['devices'],
        summary: 'Suspend/reactivate or rotate the MQTT secret (admin, regulator)',
        description:
          'Both disconnect the device (at once when the broker runs in this process, otherwise within MQTT_REGISTRY_POLL_MS); after rotation the old secret no longer connects. A facility key gets 403.',
        params: DeviceParams,
        body: DevicePatch,
        response: { 200: DeviceView, ...errorResponses(400, 401, 403, 404, 429) },
      },
    },
    async (request) => {
      const p = principalOf(request);
      const { deviceId } = request.params;
      const d = registry.getDevice(deviceId);
      if (!d) throw errors.DEVICE_NOT_FOUND(deviceId);
      assertFacilityAccess(p, d.facilityId);
      let device = d;
      let password: string | undefined;
      if (request.body.status) device = registry.updateDevice(deviceId, { status: request.body.status });
      if (request.body.rotateSecret) password = registry.rotateSecret(deviceId);
      if (request.body.rotateSecret || request.body.status === 'suspended') {
        await disconnect(deviceId, request.body.rotateSecret ? 'secret rotated' : 'suspended');
      }
      request.log.info({ deviceId, status: request.body.status, rotated: !!password, by: p.keyId }, 'device updated');
      return { ...deviceView(registry.getDevice(deviceId) ?? device), ...(password ? { password } : {}) };
    },
  );
}
