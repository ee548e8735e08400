/**
 * Prometheus endpoints of a service process: one small HTTP server per port,
 * serving the registries of the services that report there (processors and
 * moderation on PIPELINES_METRICS_PORT, the archiver on ARCHIVER_METRICS_PORT;
 * the gateway serves its own /metrics on its HTTP port). Owned by the root so
 * two services in one process never race for a port.
 */
import http from 'node:http';
import client from 'prom-client';

export interface MetricsSource {
  registry: client.Registry;
  /** Freshens gauges that are measured on demand (consumer lag). */
  beforeScrape?(): Promise<unknown>;
}

export async function serveMetrics(port: number, sources: MetricsSource[]): Promise<http.Server> {
  const registries = [...new Set(sources.map((s) => s.registry))];
  const server = http.createServer(async (req, res) => {
    if (req.url !== '/metrics') return void res.writeHead(404).end();
    await Promise.all(sources.map((s) => s.beforeScrape?.().catch(() => undefined)));
    const merged = registries.length === 1 ? registries[0]! : client.Registry.merge(registries);
    res.writeHead(200, { 'Content-Type': merged.contentType });
    res.end(await merged.metrics());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return server;
}
