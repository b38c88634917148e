/**
 * A queue that runs functions one after the other, each after the previous one settled (a failure
 * does not stop it). The PostgreSQL replicas (registry.ts, keys.ts) apply their re-reads, notices and
 * write results through one, so an older re-read never lands after a newer state.
 */
export function serialQueue(): <T>(fn: () => Promise<T> | T) => Promise<T> {
  let tail: Promise<void> = Promise.resolve();
  return <T>(fn: () => Promise<T> | T): Promise<T> => {
    const run = tail.then(fn);
    tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  };
}
