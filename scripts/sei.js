#!/usr/bin/env node
// The `sei` command. Runs the TypeScript sources through tsx's loader.
import { register } from 'tsx/esm/api';

register();
await import('./cli.ts');
