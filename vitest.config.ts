import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Native work is CPU-heavy; one file at a time per worker keeps CI's 2 cores honest.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
