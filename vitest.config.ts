import { defineConfig } from 'vitest/config';

// A headless browser takes a core of its own, and the heap settler's V8 test two child processes
// busy for ~13 s each: they run alone, after the others, so that the timing-sensitive emulator
// tests never share the two cores with them, nor each other (one file at a time).
const ALONE = ['test/integration/status-page-browser.test.ts', 'test/unit/daemon-heap-settler-v8.test.ts'];

export default defineConfig({
  test: {
    globalSetup: ['test/support/build-dist.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests run emulators paced to real time; two cores.
    maxWorkers: 2,
    minWorkers: 1,
    projects: [
      { extends: true, test: { name: 'main', include: ['test/**/*.test.ts'], exclude: ALONE, sequence: { groupOrder: 0 } } },
      // One file at a time: the V8 test's control run (no settler) once shrank while the browser
      // test shared the two cores with it (CI at 6a85e12).
      { extends: true, test: { name: 'alone', include: ALONE, sequence: { groupOrder: 1 }, poolOptions: { forks: { singleFork: true } } } },
    ],
  },
});
