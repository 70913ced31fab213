// Worker threads do not inherit the TypeScript loader the `sei` command registered: register it here.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
