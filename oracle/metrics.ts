/** Oracle metrics on the shared prom-client registry (or a private one when none is given). */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

function getOrCreate<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export interface OracleMetrics {
  runs: Counter<'outcome'>;
  runSeconds: Histogram<string>;
  settlements: Counter<'status'>;
  reconciled: Counter<string>;
  transactions: Counter<'kind'>;
  gas: Counter<string>;
  errors: Counter<'kind'>;
  blocked: Gauge<string>;
  facilityBlocked: Gauge<'facility'>;
  lastRun: Gauge<string>;
  deviceKeyMismatches: Gauge<string>;
}

export function oracleMetrics(registry: Registry = new Registry()): OracleMetrics {
  const registers = [registry];
  return {
    runs: getOrCreate(registry, 'mrv_oracle_runs_total', () => new Counter({ name: 'mrv_oracle_runs_total', help: 'oracle runs by outcome (ok, failed, busy, lease)', labelNames: ['outcome'], registers })),
    runSeconds: getOrCreate(
      registry,
      'mrv_oracle_run_duration_seconds',
      () => new Histogram({ name: 'mrv_oracle_run_duration_seconds', help: 'duration of an oracle run', buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60], registers }),
    ),
    settlements: getOrCreate(
      registry,
      'mrv_oracle_settlements_total',
      () => new Counter({ name: 'mrv_oracle_settlements_total', help: 'settlement entries by outcome (settled, skipped; lost: confirmed, then lost by the chain and settled again)', labelNames: ['status'], registers }),
    ),
    reconciled: getOrCreate(
      registry,
      'mrv_oracle_reconciled_total',
      () => new Counter({ name: 'mrv_oracle_reconciled_total', help: 'intents confirmed from the chain after a crash, timeout or a second oracle', registers }),
    ),
    transactions: getOrCreate(
      registry,
      'mrv_oracle_transactions_total',
      () => new Counter({ name: 'mrv_oracle_transactions_total', help: 'transactions sent by the oracle', labelNames: ['kind'], registers }),
    ),
    gas: getOrCreate(registry, 'mrv_oracle_gas_used_total', () => new Counter({ name: 'mrv_oracle_gas_used_total', help: 'gas used by settlement transactions', registers })),
    errors: getOrCreate(
      registry,
      'mrv_oracle_errors_total',
      () => new Counter({ name: 'mrv_oracle_errors_total', help: 'oracle errors by kind (chain, revert, sync, reconcile, compute, device_key)', labelNames: ['kind'], registers }),
    ),
    blocked: getOrCreate(
      registry,
      'mrv_oracle_blocked_facilities',
      () => new Gauge({ name: 'mrv_oracle_blocked_facilities', help: 'facilities blocked (see mrv_oracle_facility_blocked and the logs)', registers }),
    ),
    facilityBlocked: getOrCreate(
      registry,
      'mrv_oracle_facility_blocked',
      () =>
        new Gauge({
          name: 'mrv_oracle_facility_blocked',
          help: '1 while the facility is blocked (the chain refuses its settlement or its records disagree; retried with backoff), per facility',
          labelNames: ['facility'],
          registers,
        }),
    ),
    lastRun: getOrCreate(
      registry,
      'mrv_oracle_last_run_timestamp_seconds',
      () => new Gauge({ name: 'mrv_oracle_last_run_timestamp_seconds', help: 'when the last oracle run finished', registers }),
    ),
    deviceKeyMismatches: getOrCreate(
      registry,
      'mrv_oracle_device_key_mismatches',
      () =>
        new Gauge({
          name: 'mrv_oracle_device_key_mismatches',
          help: "devices whose registry key differs from the key the regulator recorded on chain (reported, never overwritten; see the oracle's error log)",
          registers,
        }),
    ),
  };
}
