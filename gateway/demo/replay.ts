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
 * Chart.js bar chart: the peaks of the stream.
 */
import { Chart, registerables } from 'chart.js';

Chart.register(...registerables);
Chart.defaults.color = '#8b90a3';
Chart.defaults.animation = false;

interface Item {
  kind: 'comment' | 'delete' | 'pin';
  at: number;
  eventId: string;
  text?: string;
  mode?: 'scroll' | 'top' | 'bottom';
  color?: number;
  pin?: { eventId: string; text: string | null } | null;
}

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
  let cursor: string | null = null;
  do {
    const q = `fromMs=${from}&toMs=${to}&view=${viewSel.value}&limit=1000${cursor ? `&cursor=${cursor}` : ''}`;
    const res = await fetch(`/v1/rooms/${encodeURIComponent(room)}/replay?${q}`);
    const page = (await res.json()) as { items: Item[]; nextCursor: string | null; code?: string; message?: string };
    if (!res.ok) throw new Error(`${page.code}: ${page.message}`);
    items.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor && gen === generation);
  if (gen !== generation) return; // a seek or a view switch came meanwhile
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
  const stats = (await (await fetch(`/v1/rooms/${encodeURIComponent(room)}/stats`)).json()) as { fromMs: number | null; toMs: number | null; code?: string; message?: string };
  if (stats.code) throw new Error(`${stats.code}: ${stats.message}`);
  const duration = Math.max(60_000, stats.fromMs !== null && stats.toMs !== null ? stats.toMs - stats.fromMs : 60_000);
  scrubber.max = String(duration);
  const tallies = (await (await fetch(`/v1/rooms/${encodeURIComponent(room)}/replay/tallies?fromMs=0&toMs=${Math.min(duration, 86_400_000)}`)).json()) as { seconds: { second: number; counts: Record<string, number> }[] };
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
