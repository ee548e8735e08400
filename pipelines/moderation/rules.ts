/**
 * Automatic moderation of one comment: pure and deterministic. The verdict is a
 * function of the comment, the user's history *as it was* and the settings —
 * "now" is always `c.occurredAt`, never the wall clock — so the live pipeline and
 * a replay of the same log reach the same verdicts and the same mutes. The caller
 * stores the returned history (per room and user) and passes it back next time;
 * the input history is never mutated.
 */
import { CJK, normalizeText, skeleton } from './normalize.ts';

export interface ModerationSettings {
  /** A run of the same character longer than this is deleted (e.g. 10). */
  maxCharRun: number;
  /** Window for repeats, ms (e.g. 60000). */
  repeatWindowMs: number;
  /** The same normalized text by one user is allowed this many times in the window (e.g. 2). */
  repeatMax: number;
  /** Window for floods, ms (e.g. 10000). */
  floodWindowMs: number;
  /** Comments by one user allowed in the flood window (e.g. 8). */
  floodMax: number;
  /** Deletes within `offenseWindowMs` that mute the user (e.g. 3; 0 or less never mutes). */
  offensesToMute: number;
  offenseWindowMs: number;
  muteMs: number;
  /** 'shadow': the user still sees their own comments, nobody else does; 'visible': the user is told. */
  muteKind: 'shadow' | 'visible';
  /** Links are held for a moderator instead of deleted. */
  holdLinks: boolean;
  /** The user's standing across rooms (see ReputationSettings). */
  reputation: ReputationSettings;
}

/**
 * Reputation, the seed's third stage: a score per user across rooms. Each
 * removal adds `deleteWeight` (a hold `holdWeight`) to the user's score in
 * the room where it happened; the score halves every `halfLifeMs` of event
 * time and each comment allowed takes `goodCredit` off (good behaviour). The
 * user's reputation is the sum over rooms. At `holdAt` or more their
 * comments are held for a moderator by default; at `shadowAt` or more they
 * are shadow-muted for `muteMs`. 0 switches a threshold off.
 */
export interface ReputationSettings {
  holdAt: number;
  shadowAt: number;
  halfLifeMs: number;
  goodCredit: number;
  deleteWeight: number;
  holdWeight: number;
  muteMs: number;
}

/** A room's share of a user's reputation: the score `s` as of `at` (event time). */
export interface RepScore {
  s: number;
  at: number;
}

/** Whether reputation is kept at all (a threshold is on). */
export const reputationOn = (s: ModerationSettings): boolean => s.reputation.holdAt > 0 || s.reputation.shadowAt > 0;

/** Below this a score is as good as none (dropped, so histories expire). */
export const REP_EPSILON = 0.05;

/** A score decayed to `now`: halved per half-life (never grown by an earlier `now`). */
export function decayed(r: RepScore | undefined, now: number, halfLifeMs: number): number {
  if (!r) return 0;
  const dt = Math.max(0, now - r.at);
  return halfLifeMs > 0 ? r.s * 0.5 ** (dt / halfLifeMs) : r.s;
}

/** Adds `weight` (negative: credit) to a decayed score; undefined once it is as good as none. */
export function addScore(r: RepScore | undefined, now: number, weight: number, halfLifeMs: number): RepScore | undefined {
  const s = Math.max(0, decayed(r, now, halfLifeMs) + weight);
  return s < REP_EPSILON ? undefined : { s: Math.round(s * 1e6) / 1e6, at: Math.max(now, r?.at ?? now) };
}

export const defaultModerationSettings: ModerationSettings = Object.freeze({
  maxCharRun: 10,
  repeatWindowMs: 60_000,
  repeatMax: 2,
  floodWindowMs: 10_000,
  floodMax: 8,
  offensesToMute: 3,
  offenseWindowMs: 600_000,
  muteMs: 600_000,
  muteKind: 'shadow',
  holdLinks: false,
  reputation: Object.freeze({ holdAt: 5, shadowAt: 10, halfLifeMs: 24 * 3600_000, goodCredit: 0.1, deleteWeight: 1, holdWeight: 0.5, muteMs: 24 * 3600_000 }),
});

/** What judging needs to remember about one user (in one room): small and bounded. */
export interface UserHistory {
  /** Recent comments: `key` is `normalizeText(text)`, `at` its occurredAt. Oldest first. */
  recent: { key: string; at: number }[];
  /** Times of recent offenses (deletes), oldest first. */
  offenses: number[];
  mutedUntil: number | null;
  /** This room's share of the user's reputation (absent: none). */
  rep?: RepScore;
}

export interface CommentToJudge {
  eventId: string;
  userId: string;
  role: 'viewer' | 'moderator' | 'broadcaster' | 'admin' | 'system';
  text: string;
  occurredAt: number;
}

export interface Judgement {
  verdict: 'allow' | 'hold' | 'delete';
  /** Every rule that fired, strongest first. */
  labels: string[];
  /** Confidence in [0, 1]: the score of the strongest label, 0 when allowed. */
  score: number;
  /** The rule that decided the verdict ('wordlist:<word>', 'link', ...); '' when allowed. */
  rule: string;
  mute: null | { untilMs: number; kind: 'shadow' | 'visible'; reason: string };
}

export interface WordMatcher {
  /** The first listed word found in `skeletonText` (a `skeleton()` of the comment), if any. */
  match(skeletonText: string): string | undefined;
}

/** The most recent comments kept per user (raised to `floodMax` when that is larger, so floods stay countable). */
export const MAX_RECENT = 50;

/** Scores per rule, strongest first: the order in which labels are listed. */
export const RULE_SCORES = Object.freeze({ wordlist: 0.99, link: 0.9, 'char-run': 0.8, repeat: 0.7, flood: 0.6, reputation: 0.5 });
type RuleName = keyof typeof RULE_SCORES;

const EXEMPT_ROLES: ReadonlySet<CommentToJudge['role']> = new Set(['moderator', 'broadcaster', 'admin', 'system']);

export function emptyHistory(): UserHistory {
  return { recent: [], offenses: [], mutedUntil: null };
}

/**
 * A word-list entry. A plain string is `{ word, whole: false }`. A `whole`
 * entry matches only as a whole word: not inside a longer run of letters of
 * its own script (Latin, with digits; Cyrillic; Greek; Hangul; Katakana, with
 * the long-vowel mark ー), so 'scat' is not found in 'moscato', 'cock' not in
 * 'peacock', 'レイプ' not in 'グレイプニル' and 'ディック' not in 'メディック'.
 * Han and hiragana have no word boundaries to check, so there it is a substring.
 */
export interface WordEntry {
  word: string;
  whole: boolean;
}

/** Scripts whose letters run together into words (digits join Latin words, as in \w). */
const WORD_SCRIPTS: readonly [string, RegExp][] = [
  ['latin', /[\p{Script=Latin}\p{N}]/u],
  ['cyrillic', /\p{Script=Cyrillic}/u],
  ['greek', /\p{Script=Greek}/u],
  ['hangul', /\p{Script=Hangul}/u],
  ['katakana', /[\p{Script=Katakana}\u30FC]/u],
];

function wordClassOf(ch: string | undefined): string | undefined {
  if (ch === undefined) return undefined;
  for (const [name, re] of WORD_SCRIPTS) if (re.test(ch)) return name;
  return undefined;
}

/** The code point that ends just before `i` (undefined at the start). */
function charBefore(text: string, i: number): string | undefined {
  if (i <= 0) return undefined;
  const low = text.charCodeAt(i - 1);
  return low >= 0xdc00 && low <= 0xdfff && i >= 2 ? text.slice(i - 2, i) : text[i - 1];
}

/** Whether `word` occurs in `text` with no letter of its own script right before or after it. */
function includesWhole(text: string, word: string, first: string | undefined, last: string | undefined): boolean {
  for (let i = text.indexOf(word); i !== -1; i = text.indexOf(word, i + 1)) {
    const end = i + word.length;
    const after = end < text.length ? String.fromCodePoint(text.codePointAt(end)!) : undefined;
    if ((first === undefined || wordClassOf(charBefore(text, i)) !== first) && (last === undefined || wordClassOf(after) !== last)) return true;
  }
  return false;
}

/**
 * Words are compared in `skeleton` form on both sides. Words of 4+ characters,
 * and any word with CJK characters, match as substrings ('spamlink' in
 * 'spamlinks'); shorter words only as whole tokens (or token sequences, for
 * phrases), so that a three-letter word does not fire inside every longer word
 * that contains it. `whole` entries (see `WordEntry`) match as whole words
 * whatever their length. When several words match, the one listed first wins.
 */
export function wordMatcher(words: readonly (string | WordEntry)[]): WordMatcher {
  type Candidate = { word: string; index: number };
  const substrings: Candidate[] = [];
  const phrases: Candidate[] = [];
  const bounded: (Candidate & { first: string | undefined; last: string | undefined })[] = [];
  const tokens = new Map<string, number>();
  const seen = new Set<string>();
  for (const w of words) {
    const entry = typeof w === 'string' ? { word: w, whole: false } : w;
    const word = skeleton(entry.word);
    if (word === '' || seen.has(word)) continue;
    seen.add(word);
    const index = seen.size - 1;
    if (entry.whole) {
      const chars = [...word];
      bounded.push({ word, index, first: wordClassOf(chars[0]), last: wordClassOf(chars.at(-1)) });
    } else if ([...word].length >= 4 || CJK.test(word)) substrings.push({ word, index });
    else if (word.includes(' ')) phrases.push({ word, index });
    else tokens.set(word, index);
  }

  return {
    match(text: string): string | undefined {
      let best: Candidate | undefined;
      const consider = (c: Candidate): void => {
        if (best === undefined || c.index < best.index) best = c;
      };
      for (const c of substrings) {
        if (best !== undefined && c.index > best.index) break;
        if (text.includes(c.word)) {
          consider(c);
          break;
        }
      }
      for (const c of bounded) {
        if (best !== undefined && c.index > best.index) break;
        if (text.includes(c.word) && includesWhole(text, c.word, c.first, c.last)) {
          consider(c);
          break;
        }
      }
      if (phrases.length > 0) {
        const padded = ` ${text} `;
        for (const c of phrases) {
          if (best !== undefined && c.index > best.index) break;
          if (padded.includes(` ${c.word} `)) {
            consider(c);
            break;
          }
        }
      }
      if (tokens.size > 0) {
        for (const t of text.split(' ')) {
          const index = tokens.get(t);
          if (index !== undefined) consider({ word: t, index });
        }
      }
      return best?.word;
    },
  };
}

/**
 * Top-level domains that count as a link after 'name.' without a scheme or
 * 'www.'. Deliberately not every TLD: two-letter ones that are English words
 * ('me', 'to', 'in', 'us', 'so', 'it', 'is', 'at', 'be', 'no', 'my', ...) would
 * flag ordinary sentences typed without a space after the full stop.
 */
const TLDS = [
  'com', 'net', 'org', 'io', 'co', 'gg', 'tv', 'xyz', 'info', 'biz', 'ru', 'cn', 'cc', 'ly', 'app', 'dev',
  'site', 'online', 'top', 'club', 'shop', 'store', 'live', 'link', 'click', 'vip', 'bet', 'win', 'tk', 'ml',
  'ga', 'cf', 'gq', 'pw', 'ws', 'su', 'de', 'uk', 'jp', 'kr', 'fr', 'eu', 'ai', 'gl', 'gd', 'vc', 'cx', 'icu',
  'buzz', 'fun', 'cam', 'xxx', 'porn', 'casino', 'money', 'loan', 'work',
];
const TLD = `(?:${TLDS.join('|')})`;
const NOT_NAME = '(?![\\p{L}\\p{N}-])';
/** Written-out or disguised dots: 'example[.]com', 'example(dot)com', 'example。com'. */
const DISGUISED_DOT = /\s*(?:[[({]\s*(?:\.|dot)\s*[\])}]|。)\s*/gu;
/** 'example . com', 'example dot com', 'example点com' (点/點 = "dot"), only when a TLD follows. */
const SPACED_DOT = new RegExp(`(?:\\s*\\.\\s*|\\s+dot\\s+|\\s*[点點]\\s*)(?=${TLD}${NOT_NAME})`, 'gu');
const SCHEME = /(?<![\p{L}\p{N}])(?:h(?:tt|xx)ps?|ftp):\/\//u;
const WWW = /(?<![\p{L}\p{N}])www\d{0,3}\./u;
const DOMAIN = new RegExp(`(?<![\\p{L}\\p{N}.-])[\\p{L}\\p{N}][\\p{L}\\p{N}-]*(?:\\.[\\p{L}\\p{N}-]+)*\\.${TLD}${NOT_NAME}`, 'u');

/** Whether normalized text contains a link: a scheme, 'www.', or 'name.tld' (also with a disguised dot). */
export function hasLink(normalized: string): boolean {
  if (SCHEME.test(normalized) || WWW.test(normalized)) return true;
  const dotted = normalized.replace(DISGUISED_DOT, '.').replace(SPACED_DOT, '.');
  return WWW.test(dotted) || DOMAIN.test(dotted);
}

const GRAPHEMES = new Intl.Segmenter('und', { granularity: 'grapheme' });

/** The longest run of the same user-perceived character (so an emoji or a flag counts once). */
export function longestCharRun(normalized: string): number {
  let longest = 0;
  let run = 0;
  let prev: string | undefined;
  for (const { segment } of GRAPHEMES.segment(normalized)) {
    run = segment === prev ? run + 1 : 1;
    prev = segment;
    if (run > longest) longest = run;
  }
  return longest;
}

/**
 * Judges one comment. Rules, strongest first (every one that fires is labelled):
 * wordlist (delete), link (delete, or hold with `holdLinks`), char-run, repeat,
 * flood (delete). Staff and system comments are always allowed and leave the
 * history untouched. Every other comment is recorded in the history whatever its
 * verdict (a deleted repeat is still a repeat attempt). Each delete is an offense;
 * reaching `offensesToMute` offenses within `offenseWindowMs` mutes the user for
 * `muteMs` (once: not again while the mute lasts) and starts the count afresh.
 */
export function judge(
  c: CommentToJudge,
  history: UserHistory | undefined,
  words: WordMatcher,
  s: ModerationSettings,
  /** The user's reputation from the other rooms, as of this comment (0: none known). */
  elsewhere = 0,
): { judgement: Judgement; history: UserHistory } {
  const prev = history ?? emptyHistory();
  if (EXEMPT_ROLES.has(c.role)) {
    return { judgement: { verdict: 'allow', labels: [], score: 0, rule: '', mute: null }, history: prev };
  }

  const now = c.occurredAt;
  const key = normalizeText(c.text);
  // Entries at exactly `now - window` have left the window.
  const within = (at: number, windowMs: number): boolean => at > now - windowMs;

  const fired: { name: RuleName; rule: string; hold: boolean }[] = [];
  const word = words.match(skeleton(c.text));
  if (word !== undefined) fired.push({ name: 'wordlist', rule: `wordlist:${word}`, hold: false });
  if (hasLink(key)) fired.push({ name: 'link', rule: 'link', hold: s.holdLinks });
  if (longestCharRun(key) > s.maxCharRun) fired.push({ name: 'char-run', rule: 'char-run', hold: false });
  const repeats = prev.recent.filter((e) => e.key === key && within(e.at, s.repeatWindowMs)).length + 1;
  if (repeats > s.repeatMax) fired.push({ name: 'repeat', rule: 'repeat', hold: false });
  const comments = prev.recent.filter((e) => within(e.at, s.floodWindowMs)).length + 1;
  if (comments > s.floodMax) fired.push({ name: 'flood', rule: 'flood', hold: false });

  const rep = s.reputation;
  // The user's standing when they post: this room's share (from the history) and the other rooms'.
  const standing = decayed(prev.rep, now, rep.halfLifeMs) + elsewhere;
  let decisive = fired.find((f) => !f.hold) ?? fired[0];
  // Held by default: only a comment the content rules let through (a removal stays a removal).
  const heldByReputation = decisive === undefined && rep.holdAt > 0 && standing >= rep.holdAt;
  if (heldByReputation) {
    decisive = { name: 'reputation', rule: 'reputation', hold: true };
    fired.push(decisive);
  }
  const labels = fired.map((f) => f.name);
  const verdict: Judgement['verdict'] = decisive === undefined ? 'allow' : decisive.hold ? 'hold' : 'delete';

  const keepRecent = Math.max(MAX_RECENT, s.floodMax);
  const recent = [...prev.recent.filter((e) => within(e.at, Math.max(s.repeatWindowMs, s.floodWindowMs))), { key, at: now }].slice(
    -keepRecent,
  );
  let offenses = prev.offenses.filter((at) => within(at, s.offenseWindowMs));
  if (verdict === 'delete') offenses.push(now);
  offenses = offenses.slice(-Math.max(1, s.offensesToMute));
  let mutedUntil = prev.mutedUntil !== null && prev.mutedUntil > now ? prev.mutedUntil : null;

  // This room's share: a removal or a content hold weighs; an allowed comment is credit. A hold for
  // reputation alone adds nothing (else a held user could never climb back down).
  const weight = verdict === 'delete' ? rep.deleteWeight : verdict === 'hold' && !heldByReputation ? rep.holdWeight : verdict === 'allow' ? -rep.goodCredit : 0;
  // Both thresholds off: no reputation kept at all (histories stay as short as the windows).
  const repAfter = reputationOn(s) ? addScore(prev.rep, now, weight, rep.halfLifeMs) : undefined;

  let mute: Judgement['mute'] = null;
  if (verdict === 'delete' && s.offensesToMute > 0 && offenses.length >= s.offensesToMute && mutedUntil === null) {
    mutedUntil = now + s.muteMs;
    mute = { untilMs: mutedUntil, kind: s.muteKind, reason: `repeat offender: ${labels.join(',')}` };
    offenses = [];
  }
  const standingAfter = (repAfter?.s ?? 0) + elsewhere;
  if (mute === null && mutedUntil === null && rep.shadowAt > 0 && standingAfter >= rep.shadowAt) {
    mutedUntil = now + rep.muteMs;
    mute = { untilMs: mutedUntil, kind: 'shadow', reason: `reputation ${standingAfter.toFixed(2)} >= ${rep.shadowAt} across rooms` };
  }

  return {
    judgement: {
      verdict,
      labels,
      score: labels.length === 0 ? 0 : heldByReputation ? Math.min(1, standing / Math.max(rep.shadowAt, rep.holdAt, 1)) : Math.max(...labels.map((l) => RULE_SCORES[l])),
      rule: decisive?.rule ?? '',
      mute,
    },
    history: { recent, offenses, mutedUntil, ...(repAfter ? { rep: repAfter } : {}) },
  };
}
