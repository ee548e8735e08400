/**
 * The thin Docker path of the test setup: where a Docker engine is reachable
 * (not on this project's own machines, which have none), the servers can come
 * from containers instead of local processes. Only Kafka, the registry and a
 * single Redis are started; ClickHouse stays embedded. The endpoints are
 * handed to the test workers through the environment, as if given by hand.
 *
 * This path is not exercised by this project's CI (no Docker engine there).
 */
import { execFileSync } from 'node:child_process';
import net from 'node:net';

export function dockerReachable(): boolean {
  try {
    execFileSync('docker', ['info'], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.once('error', reject);
  });
}

export interface ContainerStack {
  env: Record<string, string>;
  stop(): Promise<void>;
}

export async function startContainers(kafkaVersion: string, apicurioVersion: string): Promise<ContainerStack> {
  const { GenericContainer, Wait } = await import('testcontainers');
  // Kafka advertises the address clients use, so the host port is fixed before start.
  const kafkaPort = await freePort();
  const kafka = await new GenericContainer(`apache/kafka:${kafkaVersion}`)
    .withExposedPorts({ container: 9092, host: kafkaPort })
    .withEnvironment({
      KAFKA_NODE_ID: '1',
      KAFKA_PROCESS_ROLES: 'broker,controller',
      KAFKA_LISTENERS: 'PLAINTEXT://:9092,CONTROLLER://:9093',
      KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT://127.0.0.1:${kafkaPort}`,
      KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
      KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
      KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9093',
      KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
      KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
      KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'false',
    })
    .withWaitStrategy(Wait.forLogMessage(/Kafka Server started/))
    .start();
  const registry = await new GenericContainer(`apicurio/apicurio-registry:${apicurioVersion}`)
    .withExposedPorts(8080)
    .withWaitStrategy(Wait.forHttp('/health/ready', 8080))
    .start();
  const redis = await new GenericContainer('redis:7').withExposedPorts(6379).withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/)).start();
  return {
    env: {
      KAFKA_BROKERS: `127.0.0.1:${kafkaPort}`,
      SCHEMA_REGISTRY_URL: `http://127.0.0.1:${registry.getMappedPort(8080)}/apis/ccompat/v7`,
      REDIS_URL: `redis://127.0.0.1:${redis.getMappedPort(6379)}`,
      TEST_REDIS_MODES: 'single',
      TEST_EXTERNAL_SERVICES: 'true',
    },
    async stop() {
      await Promise.all([kafka.stop(), registry.stop(), redis.stop()]);
    },
  };
}
