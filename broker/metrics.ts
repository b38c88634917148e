/**
 * Ingest metrics on the shared prom-client registry. Created once per registry (get-or-create), so the
 * pipeline, the broker and the external-broker consumer can all ask for them and share the series.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface IngestMetrics {
  accepted: Counter<string>;
  duplicate: Counter<string>;
  rejected: Counter<'reason'>;
  stored: Counter<string>;
  commitSeconds: Histogram<string>;
  connectedDevices: Gauge<string>;
  aclDenied: Counter<'action'>;
  authFailed: Counter<'reason'>;
  dropped: Counter<'reason'>;
}

function getOrCreate<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export function ingestMetrics(registry: Registry): IngestMetrics {
  const registers = [registry];
  return {
    accepted: getOrCreate(registry, 'mrv_readings_accepted_total', () =>
      new Counter({ name: 'mrv_readings_accepted_total', help: 'Readings accepted and acknowledged (stored or duplicate)', registers }),
    ),
    duplicate: getOrCreate(registry, 'mrv_readings_duplicate_total', () =>
      new Counter({ name: 'mrv_readings_duplicate_total', help: 'Readings repeating a stored (deviceId, seq) with the same content', registers }),
    ),
    rejected: getOrCreate(registry, 'mrv_readings_rejected_total', () =>
      new Counter({ name: 'mrv_readings_rejected_total', help: 'Readings rejected, by reason', labelNames: ['reason'] as const, registers }),
    ),
    stored: getOrCreate(registry, 'mrv_readings_stored_total', () =>
      new Counter({ name: 'mrv_readings_stored_total', help: 'Readings newly stored (durable)', registers }),
    ),
    commitSeconds: getOrCreate(registry, 'mrv_store_commit_seconds', () =>
      new Histogram({
        name: 'mrv_store_commit_seconds',
        help: 'Duration of one group commit to the reading store',
        buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers,
      }),
    ),
    connectedDevices: getOrCreate(registry, 'mrv_connected_devices', () =>
      new Gauge({ name: 'mrv_connected_devices', help: 'Devices with an authenticated MQTT session', registers }),
    ),
    aclDenied: getOrCreate(registry, 'mrv_acl_denied_total', () =>
      new Counter({ name: 'mrv_acl_denied_total', help: 'Publish/subscribe/will refused by the topic ACL', labelNames: ['action'] as const, registers }),
    ),
    authFailed: getOrCreate(registry, 'mrv_auth_failed_total', () =>
      new Counter({ name: 'mrv_auth_failed_total', help: 'MQTT CONNECTs refused, by reason', labelNames: ['reason'] as const, registers }),
    ),
    dropped: getOrCreate(registry, 'mrv_mqtt_connections_dropped_total', () =>
      new Counter({ name: 'mrv_mqtt_connections_dropped_total', help: 'MQTT connections closed by a limit, by reason', labelNames: ['reason'] as const, registers }),
    ),
  };
}
