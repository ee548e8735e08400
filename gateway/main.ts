/**
 * `npm run gateway`: the gateway process. Builds the app and listens; stops
 * gracefully on SIGTERM/SIGINT (sockets closed with 1001, presence withdrawn).
 */
import { loadConfig } from '../core/config.ts';
import { shutdownSignal, untilAborted } from '../core/lifecycle.ts';
import { buildGateway } from './app.ts';
import { createGatewayDeps } from './deps.ts';

const cfg = loadConfig();
const deps = await createGatewayDeps(cfg);
const app = await buildGateway(deps, { logger: cfg.logLevel !== 'silent' });
const address = await app.listen({ host: cfg.gateway.host, port: cfg.gateway.port });
console.log(`[gateway] ${cfg.gateway.id} listening on ${address}`);
await untilAborted(shutdownSignal());
await app.close();
await deps.close();
console.log('[gateway] stopped');
process.exit(0);
