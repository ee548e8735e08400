/**
 * The demo room's bot: keeps a room alive with comments (various users,
 * modes, colours and sizes) and reactions, posted through the public HTTP
 * API like any client, at a given rate with bursts now and then.
 *
 * Texts come from a real live-chat log (`../shared/data/bilibili_asoul_live.jsonl.gz`
 * beside the repository, when present: it may not be redistributed, so it is
 * only read, never copied) or else from a small built-in list.
 *
 * It never fails on the gateway's pushback: a 429 pauses that user until its
 * Retry-After, a 503 or a network error pauses everyone with backoff.
 */
import fs from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { REPO_ROOT } from '../../core/config.ts';
import { Liveness, type Health, type Service } from '../../core/service.ts';

export interface ChatterOptions {
  baseUrl: string;
  room: string;
  /** Comments per second (on average; bursts go above it). */
  rate: number;
  signal: AbortSignal;
  /** A bearer token for a user id (the caller signs it). */
  token(user: string): string;
  texts?: string[];
  /** Reactions per second (default: rate / 2). */
  reactionRate?: number;
  random?: () => number;
  fetch?: typeof fetch;
}

export interface ChatterStats {
  comments: number;
  reactions: number;
  /** Answers 429 (rate limited, slow mode). */
  limited: number;
  /** 503s and network errors. */
  unavailable: number;
  /** Other refusals (moderation, validation). */
  rejected: number;
}

const BUILT_IN = [
  '来了来了',
  'hello from the demo room',
  '哈哈哈哈哈',
  'first time here!',
  '好可爱',
  'this song is great',
  '草',
  'wwwww',
  '8888888',
  'nice!',
  'lol',
  '打卡',
  'good evening everyone',
  '前方高能',
  'clip that',
  '太强了',
  'GG',
  'so smooth',
  '晚上好',
  'let\'s go!!!',
  'which game is this?',
  '冲冲冲',
  'W',
  'chat is so fast today',
];

export const CHAT_LOG = path.resolve(REPO_ROOT, '..', 'shared', 'data', 'bilibili_asoul_live.jsonl.gz');

let cached: string[] | undefined;

/** Comment texts of the real chat log when it is there (deduplicated, 1–60 characters), else the built-in list. */
export function loadDemoTexts(): string[] {
  if (cached) return cached;
  let texts: string[] = [];
  try {
    const lines = gunzipSync(fs.readFileSync(CHAT_LOG)).toString('utf8').split('\n');
    const seen = new Set<string>();
    for (const line of lines) {
      if (!line) continue;
      try {
        const t = (JSON.parse(line) as { text?: unknown }).text;
        if (typeof t !== 'string') continue;
        const s = t.trim();
        const n = [...s].length;
        if (n >= 1 && n <= 60 && !seen.has(s)) {
          seen.add(s);
          texts.push(s);
        }
      } catch {
        /* a bad line */
      }
    }
  } catch {
    texts = [];
  }
  cached = texts.length > 0 ? texts : [...BUILT_IN];
  return cached;
}

const COLORS = [0xff4d4f, 0xffd666, 0x69c0ff, 0x95de64, 0xff85c0, 0xb37feb, 0xffa940];
const EMOJIS = ['heart', 'fire', 'laugh', 'clap', 'wow', 'sad'];

const pick = <T>(xs: readonly T[], r: () => number): T => xs[Math.floor(r() * xs.length) % xs.length]!;

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, Math.max(0, ms));
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Exponentially distributed gap for a Poisson process of `perSec` events a second. */
const gapMs = (perSec: number, r: () => number) => (-Math.log(1 - Math.min(r(), 0.999999)) / perSec) * 1000;

/** Runs until `signal` aborts; resolves with what it did. */
export async function runChatter(opts: ChatterOptions): Promise<ChatterStats> {
  const r = opts.random ?? Math.random;
  const f = opts.fetch ?? globalThis.fetch;
  const texts = opts.texts && opts.texts.length > 0 ? opts.texts : loadDemoTexts();
  const base = opts.baseUrl.replace(/\/$/, '');
  const room = encodeURIComponent(opts.room);
  const stats: ChatterStats = { comments: 0, reactions: 0, limited: 0, unavailable: 0, rejected: 0 };
  // Enough users that no one hits the per-user comment budget at the given rate.
  const users = Array.from({ length: Math.max(12, Math.ceil(opts.rate * 4)) }, (_, i) => `chatter-${String(i + 1).padStart(2, '0')}`);
  const tokens = new Map<string, string>();
  const pausedUntil = new Map<string, number>();
  let globalPauseUntil = 0;
  let failures = 0;
  let burstUntil = 0;
  let nextBurstAt = Date.now() + 10_000 + r() * 20_000;

  const tokenOf = (u: string) => {
    let t = tokens.get(u);
    if (!t) tokens.set(u, (t = opts.token(u)));
    return t;
  };

  async function send(user: string, pathname: string, body: unknown): Promise<boolean> {
    let res: Response;
    try {
      res = await f(`${base}${pathname}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${tokenOf(user)}` },
        body: JSON.stringify(body),
        signal: opts.signal,
      });
      await res.arrayBuffer().catch(() => undefined);
    } catch {
      if (opts.signal.aborted) return false;
      stats.unavailable++;
      failures++;
      globalPauseUntil = Date.now() + Math.min(30_000, 500 * 2 ** Math.min(failures, 6)) * (0.5 + r() / 2);
      return false;
    }
    const retryAfter = Number(res.headers.get('retry-after') ?? '') * 1000 || 0;
    if (res.status === 429) {
      stats.limited++;
      pausedUntil.set(user, Date.now() + Math.max(retryAfter, 1000));
      return false;
    }
    if (res.status === 503 || res.status >= 500) {
      stats.unavailable++;
      failures++;
      globalPauseUntil = Date.now() + Math.max(retryAfter, Math.min(30_000, 500 * 2 ** Math.min(failures, 6)) * (0.5 + r() / 2));
      return false;
    }
    if (res.status === 401) tokens.delete(user); // expired: sign a fresh one next time
    failures = 0;
    if (!res.ok) {
      stats.rejected++;
      return false;
    }
    return true;
  }

  const availableUser = () => {
    const now = Date.now();
    for (let i = 0; i < 5; i++) {
      const u = pick(users, r);
      if ((pausedUntil.get(u) ?? 0) <= now) return u;
    }
    return undefined;
  };

  async function postComment(): Promise<void> {
    const user = availableUser();
    if (!user) return;
    const x = r();
    const mode = x < 0.84 ? 'scroll' : x < 0.92 ? 'top' : 'bottom';
    const color = r() < 0.7 ? 0xffffff : pick(COLORS, r);
    const y = r();
    const size = y < 0.12 ? 'small' : y < 0.9 ? 'medium' : 'large';
    if (await send(user, `/v1/rooms/${room}/comments`, { text: pick(texts, r), mode, color, size })) stats.comments++;
  }

  async function postReaction(): Promise<void> {
    const user = availableUser();
    if (!user) return;
    const count = 1 + Math.floor(r() * r() * 5);
    if (await send(user, `/v1/rooms/${room}/reactions`, { emoji: pick(EMOJIS, r), count })) stats.reactions++;
  }

  const reactionRate = opts.reactionRate ?? Math.max(0.2, opts.rate / 2);
  let nextComment = Date.now();
  let nextReaction = Date.now() + gapMs(reactionRate, r);
  const inflight = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  };

  while (!opts.signal.aborted) {
    const now = Date.now();
    if (now < globalPauseUntil) {
      await sleep(globalPauseUntil - now, opts.signal);
      continue;
    }
    // Bursts: every 10–30 s, a few seconds at 3–5× the rate (a goal, a joke, a drop).
    if (now >= nextBurstAt) {
      burstUntil = now + 2000 + r() * 3000;
      nextBurstAt = now + 10_000 + r() * 20_000;
    }
    const factor = now < burstUntil ? 3 + r() * 2 : 1;
    if (now >= nextComment) {
      if (inflight.size < 32) track(postComment());
      nextComment = now + gapMs(opts.rate * factor, r);
    }
    if (now >= nextReaction) {
      if (inflight.size < 32) track(postReaction());
      nextReaction = now + gapMs(reactionRate * factor, r);
    }
    await sleep(Math.min(nextComment, nextReaction) - Date.now(), opts.signal);
  }
  await Promise.allSettled([...inflight]);
  return stats;
}

/**
 * The chatter as a service of the composition root: ready at once (it posts
 * through the public API and rides out a gateway that is not up yet), down
 * only if its loop ends with an error.
 */
export class ChatterService implements Service {
  readonly name = 'chatter';
  private readonly ac = new AbortController();
  private readonly live = new Liveness();
  // No `failed`: a demo bot that stops shows as down in the health report, and
  // does not take the demo's other services down with it.
  private loop: Promise<unknown> | undefined;
  stats: ChatterStats | undefined;

  constructor(private readonly o: Omit<ChatterOptions, 'signal'>) {}

  async start(signal: AbortSignal): Promise<void> {
    signal.addEventListener('abort', () => void this.stop(), { once: true });
    this.loop = runChatter({ ...this.o, signal: this.ac.signal }).then(
      (s) => (this.stats = s),
      (err: unknown) => {
        if (!this.ac.signal.aborted) this.live.died(err instanceof Error ? err : new Error(String(err)));
      },
    );
    this.live.set('ok', `room ${this.o.room}, ${this.o.rate} comments/s`);
  }

  health(): Health {
    return this.live.health;
  }

  async stop(): Promise<void> {
    this.ac.abort();
    await this.loop;
    this.live.set('stopped');
  }
}
