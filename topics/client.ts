/** Builds the Kafka client from config: the one place connection settings are read. */
import type { Config } from '../core/config.ts';
import { LogClient } from './kafka.ts';

export function logClient(cfg: Config, clientIdSuffix = ''): LogClient {
  return new LogClient({
    brokers: cfg.kafka.brokers.split(',').map((b) => b.trim()),
    clientId: cfg.kafka.clientId + (clientIdSuffix ? `-${clientIdSuffix}` : ''),
    linger: { ms: cfg.producer.lingerMs, maxBatch: cfg.producer.maxBatch },
    compression: cfg.producer.compression,
    debug: cfg.logLevel === 'debug' || cfg.logLevel === 'trace',
  });
}
