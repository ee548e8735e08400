/**
 * The replay page (`/replay?room=…[&t=ms][&view=live|moderated|sampled][&speed=n]`):
 * a finished stream's chat played back on the video timeline. The playhead
 * runs at the stream's speed (or `speed`×); comments fly over the stage at
 * their place on the timeline (`at`), as they did live; deletions take them
 * off; the pin is shown. The scrubber seeks anywhere: the page asks the
 * replay API (`GET /v1/rooms/:room/replay`) for the next 30 s of the timeline
 * from there and plays it, fetching ahead as it goes. The view switch
 * replays the same window "as seen live", "as moderated now" or "sampled".
 * Under the scrubber, the reaction tally timeline (`/replay/tallies`) as a
 * Chart.js bar chart: the peaks of the stream. Everything it reads comes
 * through the TypeScript client's replay side (gateway/client/replay.ts),
 * as any replay player would read it.
 */
import { Chart, registerables } from 'chart.js';
import { ReplayClient, type ReplayTimelineItem, type ReplayView } from '../client/replay.ts';

Chart.register(...registerables);
Chart.defaults.color = '#8b90a3';
Chart.defaults.animation = false;

type Item = ReplayTimelineItem;

const $ = <T extends HTMLElement>(sel: string) => document.querySelector<T>(sel)!;
const params = new URLSearchParams(location.search);
const room = params.get('room') ?? 'demo';
const speed = Math.max(0.1, Number(params.get('speed') ?? 1));
const WINDOW_MS = 30_000;
const FLY_MS = 8000;
const stage = $('#stage');
const scrubber = $<HTMLInputElement>('#scrubber');
const clock = $('#clock');
const status = $('#status');
const viewSel = $<HTMLSelectElement>('#view');
$('#room-name').textContent = room;
const replay = new ReplayClient({ baseUrl: location.origin, room });
viewSel.value = params.get('view') ?? 'live';

let playhead = Number(params.get('t') ?? 0);
let playing = true;
let queue: Item[] = [];
/** The timeline is loaded up to here (exclusive) for the current view. */
let loadedTo = playhead;
let loading: Promise<void> | undefined;
let generation = 0;
const onStage = new Map<string, HTMLElement>();
let lane = 0;

const fmt = (ms: number) => `${Math.floor(ms / 60_000)}:${((ms % 60_000) / 1000).toFixed(1).padStart(4, '0')}`;

async function load(from: number, gen: number): Promise<void> {
  const to = from + WINDOW_MS;
  const items: Item[] = [];
  const stale = new AbortController();
  for await (const item of replay.timeline({ fromMs: from, toMs: to, view: viewSel.value as ReplayView, pageSize: 1000, signal: stale.signal })) {
    items.push(item);
    if (gen !== generation) stale.abort(); // a seek or a view switch came meanwhile: no more pages
  }
  if (gen !== generation) return;
  queue.push(...items);
  queue.sort((a, b) => a.at - b.at);
  loadedTo = to;
}

function ensureLoaded(): void {
  if (loading || loadedTo - playhead > 5000) return;
  const gen = generation;
  loading = load(loadedTo, gen)
    .catch((err: unknown) => {
      status.textContent = `error: ${(err as Error).message}`;
    })
    .finally(() => {
      loading = undefined;
    });
}

function fly(item: Item): void {
  const el = document.createElement('div');
  el.className = `danmaku ${item.mode ?? 'scroll'}`;
  el.textContent = item.text ?? '';
  el.dataset.eventId = item.eventId;
  el.style.color = `#${(item.color ?? 0xffffff).toString(16).padStart(6, '0')}`;
  const rows = Math.max(1, Math.floor(stage.clientHeight / 32) - 1);
  const row = item.mode === 'bottom' ? rows : item.mode === 'top' ? 1 : (lane++ % rows) + 1;
  el.style.top = `${row * 30}px`;
  stage.append(el);
  onStage.set(item.eventId, el);
  if ((item.mode ?? 'scroll') === 'scroll') {
    el.animate([{ transform: `translateX(${stage.clientWidth}px)` }, { transform: `translateX(-${el.clientWidth + 20}px)` }], { duration: FLY_MS / speed, easing: 'linear' });
  }
  setTimeout(() => {
    el.remove();
    onStage.delete(item.eventId);
  }, FLY_MS / speed);
  const line = document.createElement('div');
  line.textContent = `${fmt(item.at)}  ${item.text}`;
  $('#log').prepend(line);
}

function apply(item: Item): void {
  if (item.kind === 'comment') fly(item);
  else if (item.kind === 'delete') onStage.get(item.eventId)?.remove();
  else if (item.kind === 'pin') {
    const box = $('#pinned');
    box.hidden = !item.pin;
    box.textContent = item.pin ? `📌 ${item.pin.text ?? ''}` : '';
  } else if (item.kind === 'gift') {
    const line = document.createElement('div');
    line.textContent = `${fmt(item.at)}  🎁 ${item.userId} sent ${item.count} × ${item.name} (${item.value})`;
    $('#log').prepend(line);
  }
}

function seek(to: number): void {
  generation++;
  playhead = Math.max(0, to);
  queue = [];
  loadedTo = playhead;
  loading = undefined;
  for (const el of onStage.values()) el.remove();
  onStage.clear();
  $('#log').replaceChildren();
  ensureLoaded();
}

let last = performance.now();
function tick(now: number): void {
  const dt = now - last;
  last = now;
  if (playing && !loading) {
    const next = playhead + dt * speed;
    while (queue.length > 0 && queue[0]!.at < next) apply(queue.shift()!);
    playhead = next;
    if (document.activeElement !== scrubber) scrubber.value = String(Math.min(Number(scrubber.max), playhead));
  }
  clock.textContent = fmt(Math.floor(playhead));
  stage.dataset.playhead = String(Math.floor(playhead));
  ensureLoaded();
  requestAnimationFrame(tick);
}

async function main(): Promise<void> {
  // The timeline's length: the room's span of event time (stats), at least a minute.
  const stats = await replay.stats();
  const duration = Math.max(60_000, stats.fromMs !== null && stats.toMs !== null ? stats.toMs - stats.fromMs : 60_000);
  scrubber.max = String(duration);
  const tallies = await replay.tallies({ fromMs: 0, toMs: Math.min(duration, 86_400_000) });
  const perBucket = Math.max(1000, Math.ceil(duration / 300 / 1000) * 1000);
  const buckets = new Array<number>(Math.ceil(duration / perBucket)).fill(0);
  for (const s of tallies.seconds ?? []) {
    const b = Math.floor(s.second / perBucket);
    if (b >= 0 && b < buckets.length) buckets[b]! += Object.values(s.counts).reduce((a, n) => a + n, 0);
  }
  new Chart($<HTMLCanvasElement>('#tallies'), {
    type: 'bar',
    data: { labels: buckets.map((_, i) => fmt(i * perBucket)), datasets: [{ label: 'reactions', data: buckets, backgroundColor: '#ff5c8a' }] },
    options: { responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } }, scales: { x: { ticks: { maxTicksLimit: 12 } } } },
  });
  scrubber.addEventListener('change', () => seek(Number(scrubber.value)));
  viewSel.addEventListener('change', () => seek(playhead));
  $('#play').addEventListener('click', () => {
    playing = !playing;
    $('#play').textContent = playing ? '❚❚ pause' : '▶ play';
  });
  $('#play').textContent = '❚❚ pause';
  seek(playhead);
  status.textContent = `${fmt(duration)} of stream`;
  status.dataset.state = 'ready';
  requestAnimationFrame(tick);
}

main().catch((err: unknown) => {
  status.textContent = `error: ${(err as Error).message}`;
  status.dataset.state = 'error';
});
