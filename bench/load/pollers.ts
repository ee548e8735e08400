/**
 * Load-generator child of the poll scenario: N pollers, each a closed loop on
 * a keep-alive connection of its own, asking one gateway as fast as it
 * answers. `--path feed` polls `GET /v1/rooms/:room/feed?since=<position>`
 * with `Accept-Encoding: gzip` (as a browser does) and follows the room's
 * position; `--path healthz` asks `GET /healthz`, the framework's ceiling on
 * the same connections.
 *
 * Bodies are read whole (and gunzipped when compressed) but parsed only to
 * follow the position, one response in 50: a poller that parsed every answer
 * would measure its own JSON speed.
 *
 * Prints progress on stderr and `RESULT {...}` on stdout.
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { assertLoopback } from '../lib/proc.ts';
import { Hist, nowMs } from '../lib/stats.ts';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    room: { type: 'string', default: 'poll' },
    pollers: { type: 'string', default: '100' },
    seconds: { type: 'string', default: '10' },
    path: { type: 'string', default: 'feed' },
  },
});
const url = new URL(values.url!);
assertLoopback(values.url!);
const pollers = Number(values.pollers);
const seconds = Number(values.seconds);
const feed = values.path === 'feed';
setTimeout(() => {
  console.error('pollers: time limit reached, exiting');
  process.exit(3);
}, (seconds + 120) * 1000).unref();

const agent = new http.Agent({ keepAlive: true, maxSockets: pollers, maxFreeSockets: pollers });
let since = '';
let ok = 0;
let notModified = 0;
let errors = 0;
let bytes = 0;
let gzipped = 0;
const errorsByCode = new Map<string, number>();
const hist = new Hist();

function once(): Promise<void> {
  const path = feed ? `/v1/rooms/${encodeURIComponent(values.room!)}/feed${since ? `?since=${since}` : ''}` : '/healthz';
  const t0 = nowMs();
  return new Promise((resolve) => {
    const req = http.request({ host: url.hostname, port: url.port, path, agent, headers: { 'accept-encoding': 'gzip' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        hist.add(nowMs() - t0);
        if (status === 200 || status === 304) {
          if (status === 304) notModified++;
          ok++;
          const body = Buffer.concat(chunks);
          bytes += body.length;
          if (res.headers['content-encoding'] === 'gzip') gzipped++;
          if (feed && status === 200 && ok % 50 === 1) {
            try {
              const text = (res.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body).toString('utf8');
              const p = (JSON.parse(text) as { position?: { epoch: number; offset: number } }).position;
              if (p) since = `${p.epoch}.${p.offset}`;
            } catch {
              // a body we cannot read does not stop the loop
            }
          }
        } else {
          errors++;
          errorsByCode.set(`HTTP_${status}`, (errorsByCode.get(`HTTP_${status}`) ?? 0) + 1);
        }
        resolve();
      });
      res.on('error', () => resolve());
    });
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', (err) => {
      errors++;
      const code = `NET_${(err as NodeJS.ErrnoException).code ?? 'ERR'}`;
      errorsByCode.set(code, (errorsByCode.get(code) ?? 0) + 1);
      resolve();
    });
    req.end();
  });
}

const cpu0 = process.cpuUsage();
const t0 = nowMs();
const end = t0 + seconds * 1000;
let lastLog = t0;
const loops = Array.from({ length: pollers }, async () => {
  while (nowMs() < end) {
    await once();
    if (nowMs() - lastLog > 5000) {
      lastLog = nowMs();
      console.error(`pollers: ${ok} answers, ${errors} errors, ${Math.round((ok * 1000) / (nowMs() - t0))}/s`);
    }
  }
});
await Promise.all(loops);
const wall = (nowMs() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
agent.destroy();
console.log(
  `RESULT ${JSON.stringify({
    path: values.path,
    pollers,
    seconds: wall,
    answers: ok,
    notModified,
    errors,
    errorsByCode: Object.fromEntries(errorsByCode),
    perSec: ok / wall,
    bytesPerAnswer: ok ? bytes / ok : 0,
    gzippedShare: ok ? gzipped / ok : 0,
    latency: hist.toJSON(),
    cpuSec: (cpu.user + cpu.system) / 1e6,
  })}`,
);
process.exit(0);
