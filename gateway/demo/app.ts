/// <reference lib="dom" />
/**
 * The demo page (bundled by demo/plugin.ts into /demo.js): a video-like
 * stage with danmaku flying over it, the chat list, reactions with live
 * tallies, the pinned comment, the viewer count and a composer. Plain DOM on
 * top of DanmakuClient; the room comes from `?room=` (default `demo`), the
 * view from `?view=` (default `sampled`, what a viewer of a busy room gets).
 */
import { DanmakuClient, DanmakuError, recentBurst, type ModeInfo } from '../client/client.ts';
import type { FeedEntry, GiftItem, Leaderboard, PinState, Tallies, View } from '../protocol.ts';

const params = new URLSearchParams(location.search);
const room = params.get('room') || 'demo';
const view: View = params.get('view') === 'ordered' ? 'ordered' : 'sampled';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const layer = $<HTMLDivElement>('layer');
const stage = $<HTMLDivElement>('stage');
const chatList = $<HTMLOListElement>('chat-list');
const reactionsBox = $<HTMLDivElement>('reactions');
const pinnedBox = $<HTMLDivElement>('pinned');
const pinnedText = $<HTMLSpanElement>('pinned-text');
const viewersEl = $<HTMLSpanElement>('viewers');
const connEl = $<HTMLSpanElement>('conn');
const fastEl = $<HTMLDivElement>('fast');
const form = $<HTMLFormElement>('composer');
const nameInput = $<HTMLInputElement>('name');
const textInput = $<HTMLInputElement>('text');
const modeSelect = $<HTMLSelectElement>('mode');
const colorSelect = $<HTMLSelectElement>('color');
const sizeSelect = $<HTMLSelectElement>('size');
const sendButton = $<HTMLButtonElement>('send');
const statusEl = $<HTMLDivElement>('composer-status');
$<HTMLElement>('room-name').textContent = room;
$<HTMLAnchorElement>('analytics-link').href = `/analytics?room=${encodeURIComponent(room)}`;
$<HTMLAnchorElement>('replay-link').href = `/replay?room=${encodeURIComponent(room)}`;
document.title = `${room} · danmaku-live`;

const EMOJI: Record<string, string> = { heart: '❤️', fire: '🔥', laugh: '😂', clap: '👏', wow: '😮', sad: '😢' };
const MAX_CHAT_ROWS = 200;
/** Comments older than this (a catch-up after a reconnect) go to the list but do not fly. */
const FLY_MAX_AGE_MS = 15_000;

const client = new DanmakuClient({ baseUrl: location.origin, room, view });
let me: string | null = null;
let tallies: Tallies = { totals: {}, lastSeconds: {} };
let pinned: PinState | null = null;

const hex = (c: number) => `#${(c & 0xffffff).toString(16).padStart(6, '0')}`;
function nameColor(user: string): string {
  let h = 0;
  for (let i = 0; i < user.length; i++) h = (h * 31 + user.charCodeAt(i)) >>> 0;
  return `hsl(${h % 360} 70% 68%)`;
}

// ---- the stage --------------------------------------------------------------

interface Lane {
  /** When the tail of the last comment has fully entered (a new one may start). */
  freeAt: number;
  /** When the last comment leaves the stage on the left. */
  exitAt: number;
}

const SIZE_SCALE = { small: 0.78, medium: 1, large: 1.38 } as const;
const SCROLL_MS = 8000;
const FIXED_MS = 4500;
const MAX_ON_STAGE = 120;
let scrollLanes: Lane[] = [];
let topLanes: number[] = [];
let bottomLanes: number[] = [];
const flying = new Map<string, HTMLElement>();

function metrics() {
  const w = stage.clientWidth;
  const h = stage.clientHeight;
  const base = Math.max(14, Math.min(34, h / 15));
  const laneH = Math.round(base * 1.45);
  const lanes = Math.max(3, Math.floor((h * 0.9) / laneH));
  if (scrollLanes.length !== lanes) scrollLanes = Array.from({ length: lanes }, (_, i) => scrollLanes[i] ?? { freeAt: 0, exitAt: 0 });
  const fixedLanes = Math.max(2, Math.floor(lanes / 3));
  if (topLanes.length !== fixedLanes) topLanes = Array.from({ length: fixedLanes }, (_, i) => topLanes[i] ?? 0);
  if (bottomLanes.length !== fixedLanes) bottomLanes = Array.from({ length: fixedLanes }, (_, i) => bottomLanes[i] ?? 0);
  return { w, h, base, laneH };
}

function makeDanmaku(c: FeedEntry, base: number): HTMLElement {
  const el = document.createElement('div');
  el.className = `danmaku ${c.mode === 'scroll' ? 'scroll' : 'fixed'}${c.userId === me ? ' own' : ''}`;
  el.dataset.eventId = c.eventId;
  el.textContent = c.text;
  el.style.color = hex(c.color);
  el.style.fontSize = `${Math.round(base * SIZE_SCALE[c.size])}px`;
  return el;
}

function fly(c: FeedEntry): void {
  if (flying.size >= MAX_ON_STAGE || document.hidden) return;
  const { w, h, base, laneH } = metrics();
  const el = makeDanmaku(c, base);
  el.style.visibility = 'hidden';
  layer.appendChild(el);
  const width = el.offsetWidth;
  const now = performance.now();
  const done = () => {
    el.remove();
    if (flying.get(c.eventId) === el) flying.delete(c.eventId);
  };

  if (c.mode === 'scroll') {
    const speed = (w + width) / SCROLL_MS; // px per ms
    // A lane where the previous comment has fully entered and that this one will not catch up with.
    let lane = scrollLanes.findIndex((l) => now >= l.freeAt && now + w / speed >= l.exitAt);
    if (lane < 0) {
      // Crowded: take the lane that frees first, unless everything is far from free.
      let best = 0;
      scrollLanes.forEach((l, i) => {
        if (l.freeAt < scrollLanes[best]!.freeAt) best = i;
      });
      if (scrollLanes[best]!.freeAt - now > 1500) {
        el.remove();
        return;
      }
      lane = best;
    }
    scrollLanes[lane] = { freeAt: now + (width + 24) / speed, exitAt: now + SCROLL_MS };
    el.style.top = `${Math.round(lane * laneH + laneH * 0.15)}px`;
    el.style.visibility = '';
    const anim = el.animate([{ transform: `translateX(${w}px)` }, { transform: `translateX(${-width - 4}px)` }], { duration: SCROLL_MS, easing: 'linear' });
    anim.onfinish = done;
  } else {
    const lanes = c.mode === 'top' ? topLanes : bottomLanes;
    let lane = lanes.findIndex((until) => now >= until);
    if (lane < 0) lane = lanes.indexOf(Math.min(...lanes));
    lanes[lane] = now + FIXED_MS;
    const y = c.mode === 'top' ? lane * laneH + laneH * 0.25 : h - (lane + 1) * laneH - laneH * 0.25;
    el.style.top = `${Math.round(y)}px`;
    el.style.visibility = '';
    setTimeout(done, FIXED_MS);
  }
  flying.get(c.eventId)?.remove();
  flying.set(c.eventId, el);
}

// ---- the chat list ----------------------------------------------------------

function chatRow(c: FeedEntry): HTMLLIElement {
  const li = document.createElement('li');
  li.dataset.eventId = c.eventId;
  li.dataset.offset = String(c.offset);
  if (c.userId === me) li.classList.add('own');
  if (c.color !== 0xffffff) {
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = hex(c.color);
    li.appendChild(sw);
  }
  if (c.role !== 'viewer') {
    const role = document.createElement('span');
    role.className = 'role';
    role.textContent = c.role === 'broadcaster' ? 'host' : c.role === 'moderator' ? 'mod' : c.role;
    li.appendChild(role);
  }
  const who = document.createElement('span');
  who.className = 'who';
  who.style.color = nameColor(c.userId);
  who.textContent = c.userId;
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = c.text;
  li.title = new Date(c.occurredAt).toLocaleTimeString();
  li.append(who, text);
  return li;
}

const atBottom = () => chatList.scrollHeight - chatList.scrollTop - chatList.clientHeight < 40;

function appendChat(c: FeedEntry): void {
  const stick = atBottom();
  chatList.appendChild(chatRow(c));
  while (chatList.children.length > MAX_CHAT_ROWS) chatList.firstElementChild?.remove();
  if (stick) chatList.scrollTop = chatList.scrollHeight;
}

function renderChat(items: readonly FeedEntry[]): void {
  chatList.replaceChildren(...items.slice(-MAX_CHAT_ROWS).map(chatRow));
  chatList.scrollTop = chatList.scrollHeight;
}

function removeComment(eventId: string): void {
  chatList.querySelector(`li[data-event-id="${CSS.escape(eventId)}"]`)?.remove();
  const el = flying.get(eventId);
  if (el) {
    el.remove();
    flying.delete(eventId);
  }
}

// ---- reactions, pin, viewers, mode -------------------------------------------

const reactionButtons = new Map<string, { count: HTMLElement; burst: HTMLElement; button: HTMLButtonElement }>();
function addReactionButton(code: string, glyph: string): void {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'reaction';
  button.dataset.emoji = code;
  button.title = code;
  const e = document.createElement('span');
  e.className = 'emoji';
  e.textContent = glyph;
  const count = document.createElement('span');
  count.className = 'count';
  count.textContent = '0';
  const burst = document.createElement('span');
  burst.className = 'burst';
  burst.title = 'last 10 s';
  button.append(e, count, burst);
  button.addEventListener('click', () => void react(code, button));
  reactionsBox.appendChild(button);
  reactionButtons.set(code, { count, burst, button });
}
// The deployment's reactions (GATEWAY_EMOJIS); the defaults if the list cannot be read.
void fetch('/v1/emojis')
  .then((r) => (r.ok ? (r.json() as Promise<{ emojis: { name: string; char: string | null }[] }>) : Promise.reject(new Error(String(r.status)))))
  .then((b) => b.emojis.map((e): [string, string] => [e.name, e.char ?? e.name]))
  .catch(() => Object.entries(EMOJI))
  .then((list) => {
    for (const [code, glyph] of list) {
      EMOJI[code] = glyph;
      addReactionButton(code, glyph);
    }
    renderTallies();
  });

function renderTallies(): void {
  const burst = recentBurst(tallies, Date.now());
  for (const [code, b] of reactionButtons) {
    const total = String(tallies.totals[code] ?? 0);
    if (b.count.textContent !== total) {
      b.count.textContent = total;
      b.button.classList.add('bumped');
      setTimeout(() => b.button.classList.remove('bumped'), 400);
    }
    const n = burst[code] ?? 0;
    b.burst.textContent = n > 0 ? `+${n}` : '';
  }
}

function renderPin(): void {
  const p = pinned;
  if (!p || (p.untilMs !== null && p.untilMs <= Date.now())) {
    pinnedBox.hidden = true;
    return;
  }
  const text = p.text ?? client.items.find((c) => c.eventId === p.eventId)?.text ?? '(a pinned comment)';
  pinnedText.textContent = text;
  pinnedBox.hidden = false;
}

function renderMode(m: ModeInfo): void {
  const label = m.transport === 'ws' ? 'live' : m.transport === 'polling' ? 'polling' : m.transport === 'closed' ? 'closed' : 'connecting…';
  connEl.textContent = m.degraded ? `${label} · ${m.degraded} only` : label;
  connEl.className = `badge ${m.transport}`;
  connEl.title = m.transport === 'polling' ? `WebSocket failed ${m.wsFailures}×: polling /feed` : `view: ${m.view}`;
  const fast = m.rate < 1 || m.degraded !== null;
  fastEl.hidden = !fast;
  if (fast) {
    fastEl.textContent = m.degraded === 'tallies'
      ? 'Your connection is slow — showing reactions only'
      : `Chat is moving fast — showing ${m.rate < 1 ? `about ${Math.max(1, Math.round(m.rate * 100))}% of` : 'a sample of'} the comments`;
  }
}

// ---- the client -------------------------------------------------------------

client.on('snapshot', (s) => {
  renderChat(s.items);
  tallies = s.tallies;
  pinned = s.pinned;
  showViewers();
  renderTallies();
  renderPin();
});
client.on('comment', (c) => {
  appendChat(c);
  if (Date.now() - c.occurredAt < FLY_MAX_AGE_MS) fly(c);
});
client.on('delete', (d) => {
  removeComment(d.eventId);
  if (pinned?.eventId === d.eventId) renderPin();
});
client.on('tally', (t) => {
  tallies = t;
  renderTallies();
});
client.on('pin', (p) => {
  pinned = p;
  renderPin();
});
// Concurrent viewers (sockets + pollers, every gateway) and distinct viewers of the stream (HyperLogLog).
function showViewers(): void {
  const s = client.snapshot;
  viewersEl.textContent = `${s.viewers} watching · ${s.uniqueViewers} viewers`;
}
client.on('viewers', showViewers);
client.on('uniqueViewers', showViewers);
client.on('mode', renderMode);
client.on('error', (e) => console.warn('[danmaku]', e.code, e.message));
renderMode(client.mode);

// ---- composer ---------------------------------------------------------------

let tokenFor: string | null = null;

function setStatus(msg: string, error = false): void {
  statusEl.textContent = msg;
  statusEl.classList.toggle('error', error);
}

function describe(err: unknown): string {
  if (err instanceof DanmakuError) {
    if (err.status === 429) return `Slow down: ${err.message}`;
    if (err.code === 'ERR_NETWORK') return 'Network error — is the gateway running?';
    return err.message;
  }
  return (err as Error).message;
}

/** A dev token for the name in the box (a guest name when empty). */
async function ensureToken(): Promise<string> {
  // User ids are letters, digits and _ . : @ - (what tokens accept): other characters become '-'.
  let name = nameInput.value.trim().replace(/[^A-Za-z0-9_.:@-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64);
  if (name !== nameInput.value.trim()) nameInput.value = name;
  if (!name) {
    name = `guest-${Math.floor(Math.random() * 9000 + 1000)}`;
    nameInput.value = name;
  }
  if (tokenFor === name && me === name) return name;
  const res = await fetch(`/v1/dev/token?${new URLSearchParams({ user: name, role: 'viewer' })}`);
  const body = (await res.json()) as { token?: string; message?: string };
  if (!res.ok || !body.token) throw new Error(body.message ?? `could not get a token (${res.status})`);
  client.setToken(body.token);
  tokenFor = name;
  me = name;
  try {
    localStorage.setItem('danmaku-demo-name', name);
  } catch {
    /* storage may be off */
  }
  return name;
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  void (async () => {
    const text = textInput.value.trim();
    if (!text) {
      textInput.focus();
      return;
    }
    sendButton.disabled = true;
    try {
      await ensureToken();
      await client.post(text, {
        mode: modeSelect.value as FeedEntry['mode'],
        color: parseInt(colorSelect.value, 16),
        size: sizeSelect.value as FeedEntry['size'],
      });
      textInput.value = '';
      setStatus(`Sent as ${me}.`);
    } catch (err) {
      setStatus(describe(err), true);
    } finally {
      sendButton.disabled = false;
      textInput.focus();
    }
  })();
});

/**
 * A reaction goes over the page's WebSocket (the client sends it as a write
 * frame once its socket carries the token) and is answered when the gateway's
 * aggregated flush holding it is durable, up to half a second later: the
 * emoji pops at once, and only a refusal is shown.
 */
async function react(code: string, button: HTMLButtonElement): Promise<void> {
  try {
    await ensureToken();
    popReaction(code);
    await client.react(code, 1);
  } catch (err) {
    setStatus(describe(err), true);
    button.blur();
  }
}

function popReaction(code: string): void {
  const pop = document.createElement('div');
  pop.className = 'danmaku fixed';
  pop.textContent = EMOJI[code] ?? code;
  pop.style.fontSize = '28px';
  pop.style.top = `${stage.clientHeight - 60}px`;
  pop.style.left = `${8 + Math.random() * 84}%`;
  layer.appendChild(pop);
  pop.animate([{ transform: 'translate(-50%, 0)', opacity: 1 }, { transform: 'translate(-50%, -120px)', opacity: 0 }], { duration: 1200, easing: 'ease-out' }).onfinish = () =>
    pop.remove();
}

// ---- gifts and the leaderboard ------------------------------------------------

const giftsBox = $<HTMLDivElement>('gifts');
const leaderboardEl = $<HTMLOListElement>('leaderboard');
const giftTotalsEl = $<HTMLDivElement>('gift-totals');
const GIFT_ICON: Record<string, string> = { glowstick: '🪄', rose: '🌹', cake: '🎂', rocket: '🚀', castle: '🏰' };
const giftIcon = (id: string) => GIFT_ICON[id] ?? '🎁';

/** One button per gift of the catalogue (GET /v1/gifts); a gift goes over the socket like a comment. */
async function loadGifts(): Promise<void> {
  const catalogue = await client.gifts();
  giftsBox.replaceChildren(
    ...catalogue.gifts.map((g) => {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'gift';
      button.dataset.gift = g.id;
      button.title = `send a ${g.name} (${g.value} coins)`;
      const value = document.createElement('span');
      value.className = 'value';
      value.textContent = String(g.value);
      button.append(`${giftIcon(g.id)} ${g.name}`, value);
      button.addEventListener('click', () => void sendGift(g.id, button));
      return button;
    }),
  );
}

async function sendGift(giftId: string, button: HTMLButtonElement): Promise<void> {
  button.disabled = true;
  try {
    await ensureToken();
    await client.gift(giftId, 1);
    setStatus('');
  } catch (err) {
    setStatus(describe(err), true);
  } finally {
    button.disabled = false;
  }
}

function renderLeaderboard(b: Leaderboard): void {
  leaderboardEl.replaceChildren(
    ...b.top.map((s) => {
      const li = document.createElement('li');
      li.dataset.user = s.userId;
      const who = document.createElement('span');
      who.style.color = nameColor(s.userId);
      who.textContent = s.userId;
      const value = document.createElement('span');
      value.className = 'value';
      value.textContent = s.value.toLocaleString('en-US');
      li.append(who, value);
      return li;
    }),
  );
  giftTotalsEl.textContent = b.totalGifts === 0 ? 'no gifts yet' : `${b.totalGifts.toLocaleString('en-US')} gifts · ${b.totalValue.toLocaleString('en-US')} coins · ${b.senders} senders`;
}

/** A gift flies up the stage and takes a line in the chat. */
function showGift(g: GiftItem): void {
  const line = `${giftIcon(g.giftId)} ${g.userId} sent ${g.count > 1 ? `${g.count} × ` : ''}${g.name}`;
  const li = document.createElement('li');
  li.className = 'gift-line';
  li.dataset.eventId = g.eventId;
  li.textContent = line;
  const stick = atBottom();
  chatList.appendChild(li);
  while (chatList.children.length > MAX_CHAT_ROWS) chatList.firstElementChild?.remove();
  if (stick) chatList.scrollTop = chatList.scrollHeight;
  if (Date.now() - g.occurredAt > FLY_MAX_AGE_MS) return;
  const pop = document.createElement('div');
  pop.className = 'danmaku fixed gift-pop';
  pop.textContent = line;
  pop.style.top = `${stage.clientHeight - 70}px`;
  layer.appendChild(pop);
  pop.animate([{ transform: 'translate(-50%, 0)', opacity: 1 }, { transform: 'translate(-50%, -160px)', opacity: 0 }], { duration: 2500, easing: 'ease-out' }).onfinish = () => pop.remove();
}

client.on('snapshot', (s) => renderLeaderboard(s.leaderboard));
client.on('leaderboard', renderLeaderboard);
client.on('gift', ({ gift }) => showGift(gift));
loadGifts().catch((err: unknown) => console.warn('[danmaku] gift catalogue', err));

try {
  nameInput.value = localStorage.getItem('danmaku-demo-name') ?? '';
} catch {
  /* storage may be off */
}

// ---- clock and decay ----------------------------------------------------------

const clockEl = $<HTMLElement>('clock');
const started = Date.now();
setInterval(() => {
  const s = Math.floor((Date.now() - started) / 1000);
  clockEl.textContent = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60].map((n) => String(n).padStart(2, '0')).join(':');
  renderTallies(); // the last-10 s burst decays
  renderPin(); // pins expire
}, 1000);
