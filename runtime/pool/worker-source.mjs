// The engine worker's entry when the pool runs from the TypeScript sources (a worker thread does not inherit the
// loader `sei` registered): register it, then load the worker. The compiled tree (dist/) starts worker.js directly.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
