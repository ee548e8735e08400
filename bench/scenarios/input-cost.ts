/**
 * input-cost: the gateway's CPU per request, by kind of request — a valid
 * comment beside the bad writes the ingest bench mixes in (broken JSON, an
 * oversize comment, an unknown emoji, an expired token) and `/healthz` (the
 * framework's floor). CPU time of the gateway process (utime + stime from
 * /proc), not wall time, so a machine busy with other work changes the
 * figures little: it says whether bad input costs the gateway more than its
 * share, apart from the queueing that any extra request adds near saturation.
 * Each kind runs twice (the first round warms the JIT and the caches; the
 * second is reported), N requests with C in flight, over HTTP/1.1 keep-alive.
 */
import { createSigner } from 'fast-jwt';
import { loadConfig } from '../../core/config.ts';
import { startWorld } from '../../services/world.ts';
import { bars, svg } from '../lib/chart.ts';
import { requireInfra } from '../lib/infra.ts';
import { cpuSeconds } from '../lib/proc.ts';
import { textTable } from '../lib/report.ts';

export const INPUT_KINDS = ['valid comment', 'bad JSON', 'oversize comment', 'unknown emoji', 'expired token', 'healthz'] as const;
type InputKind = (typeof INPUT_KINDS)[number];

export interface InputCostOptions {
  requests: number;
  concurrency: number;
  log(m: string): void;
}

export interface InputCostRow {
  kind: InputKind;
  requests: number;
  /** Microseconds of gateway CPU per request. */
  cpuMicros: number;
  /** Requests per second of wall time (with the load generator on the same machine). */
  perSec: number;
  statuses: Record<string, number>;
  /** Whether every answer had the kind's expected status and code. */
  expected: boolean;
}

export interface InputCostResult {
  params: { requests: number; concurrency: number };
  rows: InputCostRow[];
}

const EXPECTED: Record<InputKind, string> = {
  'valid comment': '202',
  'bad JSON': '400 ERR_BAD_JSON',
  'oversize comment': '400 ERR_TEXT_LENGTH',
  'unknown emoji': '400 ERR_UNKNOWN_EMOJI',
  'expired token': '401 ERR_AUTH_INVALID',
  healthz: '200',
};

export async function runInputCost(o: InputCostOptions): Promise<InputCostResult> {
  await requireInfra(loadConfig(), ['kafka', 'redis', 'registry']);
  const w = await startWorld({ prefix: 'bench-input', cleanup: true, env: { LIMIT_COMMENTS: '100000', LIMIT_REACTIONS: '100000', MODERATION_ENABLED: 'false' } });
  try {
    const pid = w.gateways[0]!.proc.pid;
    const token = w.token('bench-writer');
    const expired = createSigner({ key: w.env.JWT_SECRET!, algorithm: 'HS256' })({ sub: 'bench-old', exp: Math.floor(Date.now() / 1000) - 3600 });
    const room = 'input-cost';
    const json = (t: string, body: string): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${t}` }, body });
    const run = Date.now().toString(36);
    const make: Record<InputKind, (i: number) => [string, RequestInit]> = {
      'valid comment': (i) => [`/v1/rooms/${room}/comments`, json(token, JSON.stringify({ text: `hello ${i}`, clientMsgId: `${run}-${i}` }))],
      'bad JSON': (i) => [`/v1/rooms/${room}/comments`, json(token, `{"text": "broken ${i}"`)],
      'oversize comment': (i) => [`/v1/rooms/${room}/comments`, json(token, JSON.stringify({ text: `${'x'.repeat(400)} ${i}` }))],
      'unknown emoji': () => [`/v1/rooms/${room}/reactions`, json(token, JSON.stringify({ emoji: 'not-an-emoji' }))],
      'expired token': (i) => [`/v1/rooms/${room}/comments`, json(expired, JSON.stringify({ text: `late ${i}` }))],
      healthz: () => ['/healthz', {}],
    };
    const rows: InputCostRow[] = [];
    for (const round of [0, 1]) {
      for (const kind of INPUT_KINDS) {
        const statuses: Record<string, number> = {};
        const c0 = cpuSeconds(pid);
        const t0 = performance.now();
        let next = 0;
        await Promise.all(
          Array.from({ length: o.concurrency }, async () => {
            while (next < o.requests) {
              const [p, init] = make[kind](round * o.requests + next++);
              const res = await fetch(`${w.url}${p}`, init);
              const text = await res.text();
              const code = res.status >= 400 ? ` ${(JSON.parse(text) as { code?: string }).code ?? ''}` : '';
              statuses[`${res.status}${code}`] = (statuses[`${res.status}${code}`] ?? 0) + 1;
            }
          }),
        );
        const wall = (performance.now() - t0) / 1000;
        const cpu = cpuSeconds(pid) - c0;
        if (round === 0) continue;
        const row: InputCostRow = {
          kind,
          requests: o.requests,
          cpuMicros: Math.round((cpu / o.requests) * 1e6),
          perSec: Math.round(o.requests / wall),
          statuses,
          expected: statuses[EXPECTED[kind]] === o.requests,
        };
        rows.push(row);
        o.log(`input-cost: ${kind}: ${row.cpuMicros} µs of gateway CPU per request, ${row.perSec}/s (${Object.entries(statuses).map(([s, n]) => `${s} ×${n}`).join(', ')})`);
      }
    }
    return { params: { requests: o.requests, concurrency: o.concurrency }, rows };
  } finally {
    await w.stop();
  }
}

export function inputCostTable(r: InputCostResult): string {
  const valid = r.rows.find((x) => x.kind === 'valid comment')?.cpuMicros ?? 0;
  return textTable([
    ['request', 'gateway CPU µs/request', '× a valid comment', 'requests/s', 'answers'],
    ...r.rows.map((x) => [x.kind, String(x.cpuMicros), valid > 0 ? (x.cpuMicros / valid).toFixed(2) : '', String(x.perSec), Object.entries(x.statuses).map(([s, n]) => `${s} ×${n}`).join(', ')]),
  ]);
}

export function inputCostChart(r: InputCostResult, machine: string): string {
  const p = bars({ x: 90, y: 80, w: 780, h: 300, title: 'Gateway CPU per request', yLabel: 'µs', groups: r.rows.map((x) => x.kind), series: [{ name: `${r.params.requests} requests each, ${r.params.concurrency} in flight`, values: r.rows.map((x) => x.cpuMicros) }] });
  return svg(960, 440, 'input-cost: what a bad write costs the gateway, beside a valid one', machine, [p]);
}

export function inputCostFinalLines(r: InputCostResult): string[] {
  return [`input cost (gateway CPU per request): ${r.rows.map((x) => `${x.kind} ${x.cpuMicros} µs`).join(', ')}`];
}
