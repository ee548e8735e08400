/**
 * The analytics page (`/analytics?room=…`): a room's figures from the
 * archive (`GET /v1/rooms/:room/stats`) drawn with Chart.js, each chart
 * beside the SQL that computed it (with the room and range written in) for a
 * data team to paste into `npm run sql`. Bundled by esbuild like the demo.
 */
import { Chart, registerables } from 'chart.js';
import type { StatsResponse as RoomStats } from '../replay.ts';

Chart.register(...registerables);
Chart.defaults.color = '#8b90a3';
Chart.defaults.borderColor = '#2a2f40';
Chart.defaults.animation = false; // drawn once, and a screenshot sees the final picture

const $ = <T extends HTMLElement>(sel: string) => document.querySelector<T>(sel)!;
const params = new URLSearchParams(location.search);
const room = params.get('room') ?? 'demo';
const status = $('#status');
$<HTMLInputElement>('#room-input').value = room;

const minuteLabel = (ms: number) => new Date(ms).toISOString().slice(11, 16);
const fmt = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 2 });

async function main(): Promise<void> {
  const range = ['fromMs', 'toMs'].flatMap((k) => (params.get(k) ? [`${k}=${encodeURIComponent(params.get(k)!)}`] : []));
  const res = await fetch(`/v1/rooms/${encodeURIComponent(room)}/stats${range.length ? `?${range.join('&')}` : ''}`);
  const body = (await res.json()) as RoomStats | { code: string; message: string };
  if (!res.ok || 'code' in body) {
    status.textContent = `error: ${'code' in body ? `${body.code} — ${body.message}` : res.status}`;
    status.dataset.state = 'error';
    return;
  }
  const s = body;
  document.title = `danmaku-live · analytics · ${room}`;

  const totals: [string, string][] = [
    ['room', room],
    ['comments', fmt(s.totals.comments)],
    ['reactions', fmt(s.totals.reactions)],
    ['unique chatters', fmt(s.totals.uniqueChatters)],
    ['unique viewers (this stream)', s.viewers ? fmt(s.viewers.unique) : '–'],
    ...(s.viewers?.pastStreams ?? []).map((p): [string, string] => [`unique viewers, stream of ${new Date(p.stream).toISOString().replace('T', ' ').slice(0, 16)}`, fmt(p.uniqueViewers)]),
    ['watching now', s.viewers ? fmt(s.viewers.concurrent) : '–'],
    ['comments / minute', fmt(s.totals.commentsPerMinute)],
    ['gift value', fmt(s.gifts.totalValue)],
    ['events', fmt(s.totals.events)],
    ['from', s.fromMs === null ? '–' : new Date(s.fromMs).toISOString().replace('T', ' ').slice(0, 16)],
    ['to', s.toMs === null ? '–' : new Date(s.toMs).toISOString().replace('T', ' ').slice(0, 16)],
  ];
  const box = $('#totals');
  box.replaceChildren(
    ...totals.map(([k, v]) => {
      const d = document.createElement('div');
      const b = document.createElement('b');
      b.textContent = v;
      b.dataset.total = k;
      const l = document.createElement('span');
      l.textContent = k;
      d.append(b, l);
      return d;
    }),
  );
  for (const pre of document.querySelectorAll<HTMLPreElement>('pre[data-sql]')) pre.textContent = s.sql[pre.dataset.sql as keyof RoomStats['sql']] ?? '';

  const labels = s.minutes.map((m) => minuteLabel(m.minute));
  new Chart($<HTMLCanvasElement>('#chart-minutes'), {
    type: 'line',
    data: {
      labels,
      datasets: [
        { label: 'comments', data: s.minutes.map((m) => m.comments), borderColor: '#ff5c8a', backgroundColor: '#ff5c8a33', fill: true, tension: 0.25, pointRadius: 2 },
        { label: 'reactions', data: s.minutes.map((m) => m.reactions), borderColor: '#4fc3f7', backgroundColor: '#4fc3f733', fill: true, tension: 0.25, pointRadius: 2 },
      ],
    },
    options: { responsive: true, maintainAspectRatio: false, interaction: { mode: 'index', intersect: false } },
  });
  new Chart($<HTMLCanvasElement>('#chart-chatters'), {
    type: 'line',
    data: { labels, datasets: [{ label: 'unique chatters', data: s.minutes.map((m) => m.chatters), borderColor: '#4cd964', tension: 0.25, pointRadius: 2 }] },
    options: { responsive: true, maintainAspectRatio: false },
  });
  new Chart($<HTMLCanvasElement>('#chart-emojis'), {
    type: 'bar',
    data: { labels: s.topEmojis.map((e) => e.emoji), datasets: [{ label: 'reactions', data: s.topEmojis.map((e) => e.count), backgroundColor: '#ffb020' }] },
    options: { responsive: true, maintainAspectRatio: false },
  });
  new Chart($<HTMLCanvasElement>('#chart-chatters-top'), {
    type: 'bar',
    data: { labels: s.topChatters.map((c) => c.userId), datasets: [{ label: 'comments', data: s.topChatters.map((c) => c.comments), backgroundColor: '#b388ff' }] },
    options: { indexAxis: 'y', responsive: true, maintainAspectRatio: false },
  });
  new Chart($<HTMLCanvasElement>('#chart-moderation'), {
    type: 'bar',
    data: { labels: ['deleted', 'held', 'verdicts', 'muted'], datasets: [{ label: 'actions', data: [s.moderation.deleted, s.moderation.held, s.moderation.decisions, s.moderation.muted], backgroundColor: '#ff7043' }] },
    options: { responsive: true, maintainAspectRatio: false },
  });
  new Chart($<HTMLCanvasElement>('#chart-gifts'), {
    type: 'bar',
    data: {
      labels: s.gifts.minutes.map((m) => minuteLabel(m.minute)),
      datasets: [
        { label: 'value', data: s.gifts.minutes.map((m) => m.value), backgroundColor: '#ffd54f', yAxisID: 'y' },
        { label: 'gifts', data: s.gifts.minutes.map((m) => m.gifts), backgroundColor: '#ff5c8a', yAxisID: 'y1' },
      ],
    },
    options: { responsive: true, maintainAspectRatio: false, scales: { y: { position: 'left' }, y1: { position: 'right', grid: { drawOnChartArea: false } } } },
  });
  new Chart($<HTMLCanvasElement>('#chart-gifters'), {
    type: 'bar',
    data: { labels: s.gifts.topGifters.map((g) => g.userId), datasets: [{ label: 'value sent', data: s.gifts.topGifters.map((g) => g.value), backgroundColor: '#ffd54f' }] },
    options: { indexAxis: 'y', responsive: true, maintainAspectRatio: false },
  });
  $('#moderation-rate').textContent = `removed or held: ${(s.moderation.rate * 100).toFixed(2)} % of comments`;

  const busiest = [...s.minutes].sort((a, b) => b.comments - a.comments || a.minute - b.minute).slice(0, 5);
  $('#busiest tbody').replaceChildren(
    ...busiest.map((m) => {
      const tr = document.createElement('tr');
      for (const v of [new Date(m.minute).toISOString().replace('T', ' ').slice(0, 16), fmt(m.comments), fmt(m.reactions), fmt(m.chatters)]) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }),
  );
  status.textContent = `${fmt(s.totals.comments)} comments in ${s.minutes.length} minute${s.minutes.length === 1 ? "" : "s"} with activity`;
  status.dataset.state = 'ready';
}

main().catch((err: unknown) => {
  status.textContent = `error: ${(err as Error).message}`;
  status.dataset.state = 'error';
});
