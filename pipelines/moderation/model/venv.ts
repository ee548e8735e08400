/**
 * The moderation model's Python virtualenv: the classifier (its weights ship
 * inside the wheel) and Confluent's client, built once in the cache folder
 * (core/pyvenv.ts: marker, lock) and reused by the stage and the eval.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../../../core/config.ts';
import { ensureVenv } from '../../../core/pyvenv.ts';

/**
 * Pinned: the model's name (and so the rule it writes and the ids it
 * derives) includes its version, and its joblib files are only loadable by
 * the scikit-learn it pins itself. The client's extras: see topics/interop/venv.ts.
 */
export const MODEL_VENV_PACKAGES = ['alt-profanity-check==1.9.1', 'confluent-kafka[avro,schemaregistry]', 'fastavro', 'requests', 'attrs', 'cachetools'] as const;

/** The folder of the Python sources (processor.py, score.py, model.py). */
export const MODEL_DIR = path.dirname(fileURLToPath(import.meta.url));

/** The venv's python, built on first use (about a minute, 360 MB). */
export function ensureModelVenv(cfg: Config, log?: (m: string) => void): Promise<string> {
  return ensureVenv({ dir: cfg.moderation.model.venv, packages: MODEL_VENV_PACKAGES, python: cfg.moderation.model.python, log });
}
