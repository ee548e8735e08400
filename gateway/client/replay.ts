/**
 * The replay side of the TypeScript client: a finished (or running) stream's
 * timeline from the archive, for replay players such as the replay page
 * (gateway/demo/replay.ts) — pages followed by their cursors, the reaction
 * tally timeline and the room's stats. Same errors as the live client
 * (DanmakuError with the catalogue's code), same optional token.
 *
 *   const replay = new ReplayClient({ baseUrl, room: 'demo' });
 *   for await (const item of replay.timeline({ fromMs: 0, toMs: 30_000, view: 'live' })) play(item);
 */
import type { StatsResponse, TallyTimelineResponse } from '../replay.ts';
import { DanmakuError, errorOf } from './client.ts';

export type ReplayView = 'live' | 'moderated' | 'sampled';

/** One item of the timeline; `at` is its place on the video timeline (ms since the stream started). */
export interface ReplayTimelineItem {
  kind: 'comment' | 'delete' | 'pin' | 'gift';
  at: number;
  eventId: string;
  offset?: number;
  /** Comments. */
  text?: string;
  userId?: string;
  mode?: 'scroll' | 'top' | 'bottom';
  color?: number;
  size?: string;
  occurredAt?: number;
  videoOffsetMs?: number | null;
  /** Tombstones: why the comment went. */
  reason?: string;
  deletionId?: string;
  /** Pins: the pinned comment, or null when unpinned. */
  pin?: { eventId: string; text: string | null; untilMs?: number | null } | null;
  /** Gifts. */
  giftId?: string;
  name?: string;
  count?: number;
  value?: number;
}

export interface ReplayPageResult {
  items: ReplayTimelineItem[];
  /** Pass to the next `page()` of the same view and range; null at the end. */
  nextCursor: string | null;
}

export interface ReplayRange {
  /** Start of the window on the video timeline (ms since the stream started), inclusive. */
  fromMs: number;
  /** End of the window, exclusive. */
  toMs: number;
}

export interface ReplayClientOptions {
  baseUrl: string;
  room: string;
  /** A viewer's token: a shadow-muted user sees their own comments in replay too. */
  token?: string;
  fetch?: typeof fetch;
}

export type { StatsResponse, TallyTimelineResponse };

export class ReplayClient {
  private readonly fetchFn: typeof fetch;

  constructor(private readonly opts: ReplayClientOptions) {
    this.fetchFn = opts.fetch ?? ((...a: Parameters<typeof fetch>) => fetch(...a));
  }

  private async get<T>(path: string, query: Record<string, string | number | undefined>): Promise<T> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, String(v));
    const url = `${this.opts.baseUrl}/v1/rooms/${encodeURIComponent(this.opts.room)}${path}${q.size > 0 ? `?${q}` : ''}`;
    const res = await this.fetchFn(url, { headers: this.opts.token ? { authorization: `Bearer ${this.opts.token}` } : {} });
    if (!res.ok) throw await errorOf(res);
    return (await res.json()) as T;
  }

  /** One page of the timeline: `limit` items at most (the gateway's default when absent). */
  async page(q: ReplayRange & { view?: ReplayView; limit?: number; cursor?: string | null }): Promise<ReplayPageResult> {
    const body = await this.get<{ items: ReplayTimelineItem[]; nextCursor: string | null }>('/replay', {
      fromMs: q.fromMs,
      toMs: q.toMs,
      view: q.view ?? 'live',
      format: 'json',
      limit: q.limit,
      cursor: q.cursor ?? undefined,
    });
    return { items: body.items, nextCursor: body.nextCursor };
  }

  /**
   * Every item of the window, in timeline order, following the cursors page
   * by page. Stops early when `signal` aborts (a seek or a view switch).
   */
  async *timeline(q: ReplayRange & { view?: ReplayView; pageSize?: number; signal?: AbortSignal }): AsyncGenerator<ReplayTimelineItem> {
    let cursor: string | null = null;
    do {
      if (q.signal?.aborted) return;
      const p = await this.page({ fromMs: q.fromMs, toMs: q.toMs, view: q.view, limit: q.pageSize, cursor });
      for (const item of p.items) yield item;
      cursor = p.nextCursor;
    } while (cursor !== null);
  }

  /** Reactions per second of the window, per emoji (at most 24 h per call). */
  tallies(q: ReplayRange): Promise<TallyTimelineResponse> {
    return this.get<TallyTimelineResponse>('/replay/tallies', { fromMs: q.fromMs, toMs: q.toMs });
  }

  /** Comments per minute, top emojis and chatters, moderation, gifts (event time; whole room without a range). */
  stats(q: { fromMs?: number; toMs?: number } = {}): Promise<StatsResponse> {
    return this.get<StatsResponse>('/stats', { fromMs: q.fromMs, toMs: q.toMs });
  }
}

export { DanmakuError };
