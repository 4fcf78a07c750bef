import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/build-dist.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests run emulators paced to real time; two cores.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
