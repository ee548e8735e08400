/**
 * The shared shape of every long-running process (processors, archiver,
 * gateway): one AbortSignal that SIGINT or SIGTERM aborts, handed to
 * `start(signal)`, so a process stops gracefully the same way everywhere.
 */
export function shutdownSignal(log: (m: string) => void = () => {}): AbortSignal {
  const ac = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping gracefully`);
      ac.abort();
    });
  }
  return ac.signal;
}

/** Resolves when the signal aborts (immediately if it already has). */
export function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
