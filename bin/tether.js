#!/usr/bin/env node
// The CLI is TypeScript; tsx runs it without a build step.
import { register } from 'tsx/esm/api';

register();
await import('../host/cli/main.ts');
