/**
 * A Python virtualenv holding Confluent's own Kafka client, used only to
 * prove our wire format with a client nobody here wrote. Built once in the
 * cache folder and reused (marker, lock: see core/pyvenv.ts).
 */
import path from 'node:path';
import { ensureVenv } from '../../core/pyvenv.ts';

/**
 * The extras matter: since 2.x the client's schema_registry module imports
 * httpx and authlib at load time, which only its `avro`/`schemaregistry`
 * extras pull in; a bare `confluent-kafka` fails on `import` of it.
 */
export const VENV_PACKAGES = ['confluent-kafka[avro,schemaregistry]', 'fastavro', 'requests', 'attrs', 'cachetools'] as const;

/**
 * Returns the python executable of `<cacheDir>/pyvenv-confluent`, creating
 * the venv and installing the Confluent client into it on first use.
 */
export function ensurePythonVenv(cacheDir: string, opts: { python?: string; lockTimeoutMs?: number } = {}): Promise<string> {
  return ensureVenv({ dir: path.join(cacheDir, 'pyvenv-confluent'), packages: VENV_PACKAGES, ...opts });
}
