/**
 * Operations: liveness (`/healthz`: the process serves), readiness
 * (`/readyz`: Redis answers and Kafka accepts writes — a load balancer stops
 * sending writes to a gateway that cannot make them durable), and Prometheus
 * metrics (`/metrics`).
 */
import fp from 'fastify-plugin';
import client from 'prom-client';
import type { FastifyInstance } from 'fastify';

export const gatewayMetrics = new client.Registry();
client.collectDefaultMetrics({ register: gatewayMetrics, prefix: 'danmaku_gateway_' });
const requests = new client.Counter({ name: 'danmaku_http_requests_total', help: 'HTTP requests by route and status.', labelNames: ['method', 'route', 'status'], registers: [gatewayMetrics] });
const latency = new client.Histogram({
  name: 'danmaku_http_request_duration_seconds',
  help: 'HTTP request latency by route.',
  labelNames: ['method', 'route'],
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [gatewayMetrics],
});
/** Other plugins (push) register their own registries here, merged into /metrics. */
export const extraRegistries: client.Registry[] = [];

// fp: its onResponse hook must count the routes of every plugin, not only its own.
export const opsPlugin = fp(async (app: FastifyInstance) => {
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown';
    requests.inc({ method: req.method, route, status: String(reply.statusCode) });
    latency.observe({ method: req.method, route }, reply.elapsedTime / 1000);
  });

  app.get('/healthz', { schema: { tags: ['ops'], summary: 'Liveness' } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { schema: { tags: ['ops'], summary: 'Readiness: Redis and Kafka reachable' } }, async (_req, reply) => {
    const checks: Record<string, string> = {};
    await Promise.all([
      app.deps.redis.ping().then(
        () => (checks.redis = 'ok'),
        (e: Error) => (checks.redis = e.message),
      ),
      app.deps.log.partitionCount(app.deps.topics.roomEvents).then(
        () => (checks.kafka = 'ok'),
        (e: Error) => (checks.kafka = e.message),
      ),
    ]);
    const ok = Object.values(checks).every((v) => v === 'ok');
    return reply.status(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not ready', checks });
  });

  app.get('/metrics', { schema: { tags: ['ops'], summary: 'Prometheus metrics', hide: false } }, async (_req, reply) => {
    const merged = client.Registry.merge([gatewayMetrics, ...extraRegistries]);
    return reply.header('Content-Type', merged.contentType).send(await merged.metrics());
  });
});
