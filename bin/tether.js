#!/usr/bin/env node
// Runs the compiled CLI (npm ci and npm run build write dist/).
try {
  await import('../dist/cli/main.js');
} catch (err) {
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli/main.js')) {
    console.error('tether: dist/ is missing: run `npm run build` (npm ci builds it too)');
    process.exit(1);
  }
  throw err;
}
