import { defineConfig } from 'vitest/config';

// Tiers by file name: unit specs are pure and need no server; int and e2e
// specs share one real stack started by the global setup.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          // Pure specs first: they fail fast, before the servers are even started.
          sequence: { groupOrder: 0 },
          include: ['**/*.unit.spec.ts'],
          exclude: ['node_modules/**', '.data/**'],
        },
      },
      {
        test: {
          name: 'int',
          sequence: { groupOrder: 1 },
          include: ['**/*.int.spec.ts', '**/*.e2e.spec.ts'],
          exclude: ['node_modules/**', '.data/**'],
          globalSetup: ['test/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          // Two cores run Kafka, the registry and Redis too: cap parallel files.
          maxWorkers: 2,
        },
      },
    ],
  },
});
