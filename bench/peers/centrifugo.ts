/**
 * The Centrifugo (open-source v6) peer: built from source with
 * `go install github.com/centrifugal/centrifugo/v6@<CENTRIFUGO_VERSION>` into
 * `<cache>/bin/centrifugo-<version>/` on first use (progress on stderr), then
 * run with a generated config: anonymous connect and subscribe allowed on
 * channels without namespace, an HTTP API key, health endpoint on.
 *
 * When the build fails the peer is reported unavailable with the error (and
 * the error is remembered in `<dir>/UNAVAILABLE` for `--ci`, which never builds).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Config } from '../../core/config.ts';
import { freePort, sleep, startCommand, type Child } from '../lib/proc.ts';

/** The v6 release the Go module proxy serves here (it refuses v6.0–v6.2); pinned, so every run measures the same peer. */
export const CENTRIFUGO_VERSION = 'v6.9.1';
export const CENTRIFUGO_MODULE = 'github.com/centrifugal/centrifugo/v6';

export function centrifugoDir(cfg: Config): string {
  return path.join(cfg.cacheDir, 'bin', `centrifugo-${CENTRIFUGO_VERSION}`);
}

export type Availability = { bin: string; buildSeconds?: number } | { unavailable: string };

/** The binary, building it when allowed and missing. */
export async function ensureCentrifugo(cfg: Config, o: { build: boolean; log: (m: string) => void; timeoutMs?: number }): Promise<Availability> {
  const dir = centrifugoDir(cfg);
  const bin = path.join(dir, 'centrifugo');
  if (existsSync(bin)) return { bin };
  const marker = path.join(dir, 'UNAVAILABLE');
  if (!o.build) {
    const last = existsSync(marker) ? ` (last build attempt: ${readFileSync(marker, 'utf8').trim().split('\n').slice(-3).join(' | ')})` : '';
    return { unavailable: `not built in ${dir} and this run does not build it${last}` };
  }
  mkdirSync(dir, { recursive: true });
  const spec = `${CENTRIFUGO_MODULE}@${CENTRIFUGO_VERSION}`;
  o.log(`building Centrifugo: go install ${spec} (GOBIN=${dir}); first time only, this takes a few minutes`);
  const t0 = Date.now();
  const out: string[] = [];
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn('go', ['install', '-v', spec], { env: { ...process.env, GOBIN: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let n = 0;
    const take = (b: Buffer) => {
      for (const line of b.toString('utf8').split('\n').filter(Boolean)) {
        out.push(line);
        if (++n % 25 === 0 || /error|forbidden|not available|cannot/i.test(line)) o.log(`  go: ${line}`);
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    const t = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 15 * 60_000);
    child.on('error', (err) => {
      out.push(String(err));
      resolve(-1);
    });
    child.on('exit', (c) => {
      clearTimeout(t);
      resolve(c);
    });
  });
  const seconds = (Date.now() - t0) / 1000;
  if (code === 0 && existsSync(bin)) {
    o.log(`built Centrifugo ${CENTRIFUGO_VERSION} in ${seconds.toFixed(0)} s`);
    return { bin, buildSeconds: seconds };
  }
  const err = out.filter((l) => !/^\S+\/\S+$/.test(l)).slice(-6).join('\n') || `go install exited ${code}`;
  writeFileSync(marker, `${new Date().toISOString()} go install ${spec} failed after ${seconds.toFixed(0)} s:\n${err}\n`);
  return { unavailable: `go install ${spec} failed: ${err.replace(/\s+/g, ' ').trim()}` };
}

export interface CentrifugoServer {
  url: string;
  apiKey: string;
  proc: Child;
  stop(): Promise<void>;
}

export async function startCentrifugo(bin: string, o: { workDir: string; maxMs: number }): Promise<CentrifugoServer> {
  const port = await freePort();
  const apiKey = randomBytes(12).toString('hex');
  mkdirSync(o.workDir, { recursive: true });
  const configFile = path.join(o.workDir, `centrifugo-${port}.json`);
  const config = {
    http_server: { address: '127.0.0.1', port },
    log: { level: 'error' },
    health: { enabled: true },
    http_api: { key: apiKey },
    client: { allow_anonymous_connect_without_token: true, allowed_origins: ['*'] },
    channel: { without_namespace: { allow_subscribe_for_anonymous: true, allow_subscribe_for_client: true } },
  };
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const proc = startCommand('centrifugo', 'bash', ['-c', `ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec '${bin}' --config='${configFile}'`], { maxMs: o.maxMs });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const r = await fetch(`${url}/health`);
      if (r.ok) break;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) {
      await proc.stop();
      throw new Error(`centrifugo did not become healthy on ${url}; output:\n  ${proc.output.slice(-15).join('\n  ')}`);
    }
    await sleep(100);
  }
  return { url, apiKey, proc, stop: () => proc.stop() };
}
