import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../core/errors.ts';
import { normalizeText, skeleton } from './normalize.ts';
import {
  defaultModerationSettings,
  judge,
  MAX_RECENT,
  wordMatcher,
  type CommentToJudge,
  type Judgement,
  type ModerationSettings,
  type UserHistory,
} from './rules.ts';
import { DEFAULT_WORDLIST_PATH, parseWordList, parseWordListLines, WordListFile } from './wordlist.ts';
import { comment as postComment, makeEvent } from '../../schemas/events.ts';
import { foldRoom, roomKeys } from '../projection.ts';
import { derivedEventId, moderationProjection } from './processor.ts';

const WORDS = wordMatcher(['badword', 'spamlink', 'scamcoin', '垃圾广告', 'ass']);
const S = defaultModerationSettings;

let seq = 0;
function comment(text: string, occurredAt: number, over: Partial<CommentToJudge> = {}): CommentToJudge {
  seq += 1;
  return { eventId: `e${seq}`, userId: 'u1', role: 'viewer', text, occurredAt, ...over };
}

/** Judges comments in order, threading the history through, as the pipeline does. */
function run(
  comments: CommentToJudge[],
  settings: ModerationSettings = S,
  start?: UserHistory,
): { judgements: Judgement[]; history: UserHistory | undefined } {
  let history = start;
  const judgements: Judgement[] = [];
  for (const c of comments) {
    const r = judge(c, history, WORDS, settings);
    judgements.push(r.judgement);
    history = r.history;
  }
  return { judgements, history };
}

function judgeOne(text: string, settings: ModerationSettings = S): Judgement {
  return judge(comment(text, 1_000), undefined, WORDS, settings).judgement;
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

describe('normalizeText', () => {
  it('given full-width letters, when normalized, then they fold to ASCII lower case', () => {
    expect(normalizeText('ＳＰＡＭ')).toBe('spam');
    expect(normalizeText('𝐒𝐏𝐀𝐌')).toBe('spam');
  });

  it('given diacritics, when normalized, then they are stripped', () => {
    expect(normalizeText('späm')).toBe('spam');
    expect(normalizeText('Crème Brûlée')).toBe('creme brulee');
    expect(normalizeText('s̷̢p̸a̵m̶')).toBe('spam'); // "Zalgo" marks
  });

  it('given zero-width and other invisible characters, when normalized, then they are removed', () => {
    expect(normalizeText('sp\u200Bam')).toBe('spam');
    for (const ch of ['\u200C', '\u200D', '\u200E', '\u200F', '\u2060', '\u2064', '\uFEFF', '\u00AD', '\u180E', '\u202E', '\u3164']) {
      expect(normalizeText(`sp${ch}am`), `U+${ch.codePointAt(0)!.toString(16)}`).toBe('spam');
    }
  });

  it('given Cyrillic and Greek look-alikes, when normalized, then they map to Latin', () => {
    expect(normalizeText('ѕрам')).toBe('spam');
    expect(normalizeText('SРАМ')).toBe('spam'); // Cyrillic capitals Р А М
    expect(normalizeText('ρανκ')).toBe('pavk');
  });

  it('given whitespace runs, when normalized, then they collapse to one space and are trimmed', () => {
    expect(normalizeText('  gg \t wp\n\n !  ')).toBe('gg wp !');
  });

  it('given digits and symbols, when normalized, then they are kept (leet is for word matching only)', () => {
    expect(normalizeText('GG 5 @all $10')).toBe('gg 5 @all $10');
  });

  it('given text in other scripts, when normalized, then its meaning is kept', () => {
    expect(normalizeText('が')).toBe('が'); // kana voicing mark is not a diacritic to strip
    expect(normalizeText('你好 世界')).toBe('你好 世界');
    expect(normalizeText('안녕하세요')).toBe('안녕하세요');
    expect(normalizeText('नमस्ते')).toBe('नमस्ते');
  });

  it('is idempotent', () => {
    for (const t of ['ＳＰＡＭ', 'späm  x', 'ѕрам', 'İstanbul', 'が', 'sp\u200Bam']) {
      expect(normalizeText(normalizeText(t))).toBe(normalizeText(t));
    }
  });
});

describe('skeleton', () => {
  it('given spaced, dotted, full-width and look-alike spellings, when skeletonized, then all become the word', () => {
    for (const t of ['s p a m', 's.p.a.m', 'ｓｐａｍ', 'ѕрам', 'S-P-A-M', 'sp4m', '$p@m', 'späm!!!', 'sp\u200Bam']) {
      expect(skeleton(t), t).toBe('spam');
    }
    expect(skeleton('垃 圾 广 告')).toBe('垃圾广告');
  });

  it('given several words, when skeletonized, then word boundaries are kept', () => {
    expect(skeleton('Bad, word!')).toBe('bad word');
    expect(skeleton('h3ll0 w0rld')).toBe('hello world');
  });

  it('given a plain number, when skeletonized, then it is not read as leetspeak', () => {
    expect(skeleton('455 1337')).toBe('455 1337');
  });
});

describe('wordMatcher', () => {
  it('given a word of 4+ characters, when it appears inside a longer word, then it matches', () => {
    expect(WORDS.match(skeleton('spamlinks here'))).toBe('spamlink');
  });

  it('given a word shorter than 4 characters, when it is only part of a word, then it does not match', () => {
    expect(WORDS.match(skeleton('first class assignment'))).toBeUndefined();
    expect(WORDS.match(skeleton('you ass'))).toBe('ass');
    expect(WORDS.match(skeleton('you a.s.s'))).toBe('ass');
  });

  it('given a CJK word, when it appears inside a sentence, then it matches as a substring', () => {
    expect(WORDS.match(skeleton('快来看垃圾广告啊'))).toBe('垃圾广告');
  });

  it('given list entries in any form, when built, then they are compared in skeleton form', () => {
    const m = wordMatcher(['ＢＡＤ ＷＯＲＤ', 'sc4mcoin', '', '   ']);
    expect(m.match(skeleton('so bad word'))).toBe('bad word');
    expect(m.match(skeleton('buy SCAMCOIN'))).toBe('scamcoin');
    expect(m.match(skeleton('fine'))).toBeUndefined();
  });

  it('given several matching words, when matched, then the one listed first wins', () => {
    expect(wordMatcher(['scamcoin', 'badword']).match('badword scamcoin')).toBe('scamcoin');
    expect(wordMatcher(['zz', 'badword']).match('badword zz')).toBe('zz');
  });
});

describe('judge', () => {
  it('given an ordinary comment, when judged, then it is allowed and recorded in the history', () => {
    const { judgement, history } = judge(comment('Ｎｉｃｅ play!', 5_000), undefined, WORDS, S);
    expect(judgement).toEqual({ verdict: 'allow', labels: [], score: 0, rule: '', mute: null });
    expect(history).toEqual({ recent: [{ key: 'nice play!', at: 5_000 }], offenses: [], mutedUntil: null });
  });

  it.each(['moderator', 'broadcaster', 'admin', 'system'] as const)(
    'given a %s, when they post anything, then it is allowed and their history is unchanged',
    (role) => {
      const before: UserHistory = deepFreeze({ recent: [{ key: 'x', at: 1 }], offenses: [2], mutedUntil: null });
      const { judgement, history } = judge(
        comment(`badword http://x.com ${'a'.repeat(40)}`, 10, { role }),
        before,
        WORDS,
        S,
      );
      expect(judgement).toEqual({ verdict: 'allow', labels: [], score: 0, rule: '', mute: null });
      expect(history).toEqual(before);
    },
  );

  describe('wordlist', () => {
    it.each(['this is a badword', 'B4DW0RD', 'ｂａｄｗｏｒｄ', 'b a d w o r d', 'bäd.wörd', 'bаdwоrd' /* Cyrillic а о */])(
      'given %j, when judged, then it is deleted by the word list',
      (text) => {
        const j = judgeOne(text);
        expect(j).toMatchObject({ verdict: 'delete', labels: ['wordlist'], rule: 'wordlist:badword', score: 0.99 });
      },
    );

    it('given a comment that only resembles a short word, when judged, then it is allowed', () => {
      expect(judgeOne('first class!').verdict).toBe('allow');
    });
  });

  describe('link', () => {
    it.each([
      'visit http://x.y',
      'HTTPS://example.org/path',
      'www.example.org',
      'go to example.com now',
      'ｅｘａｍｐｌｅ．ｃｏｍ',
      'example . com',
      'example[.]com',
      'example(dot)net',
      'ехаmple.соm', // Cyrillic е х а с о
      '加我example点com',
      'sub.domain.io/abc',
    ])('given %j, when judged, then it is deleted as a link', (text) => {
      expect(judgeOne(text)).toMatchObject({ verdict: 'delete', labels: ['link'], rule: 'link', score: 0.9 });
    });

    it.each(['e.g. this', 'pi is 3.14', 'i like node.js', 'wait.what', 'tell me.to be sure', 'so.. com on'])(
      'given %j, when judged, then it is not a link',
      (text) => {
        expect(judgeOne(text).labels).not.toContain('link');
      },
    );

    it('given holdLinks, when a link is posted, then it is held and is not an offense', () => {
      const r = judge(comment('example.com', 1), undefined, WORDS, { ...S, holdLinks: true });
      expect(r.judgement).toMatchObject({ verdict: 'hold', labels: ['link'], rule: 'link', mute: null });
      expect(r.history.offenses).toEqual([]);
    });

    it('given holdLinks, when a link also breaks a delete rule, then it is deleted by that rule', () => {
      const j = judgeOne(`example.com ${'!'.repeat(20)}`, { ...S, holdLinks: true });
      expect(j).toMatchObject({ verdict: 'delete', labels: ['link', 'char-run'], rule: 'char-run' });
    });
  });

  describe('char-run', () => {
    it.each(['a'.repeat(11), `gg${'哈'.repeat(11)}`, '😂'.repeat(11), `${'a'.repeat(5)}\u200B${'A'.repeat(6)}`])(
      'given %j, when judged, then it is deleted as a character run',
      (text) => {
        expect(judgeOne(text)).toMatchObject({ verdict: 'delete', labels: ['char-run'], rule: 'char-run', score: 0.8 });
      },
    );

    it.each(['a'.repeat(10), 'hahahahahahahahahaha', '😂'.repeat(10), '1 1 1 1 1 1 1 1 1 1 1 1'])(
      'given %j, when judged, then it is allowed',
      (text) => {
        expect(judgeOne(text).verdict).toBe('allow');
      },
    );
  });

  describe('repeat', () => {
    it('given the same text (in any disguise) a third time within the window, when judged, then it is deleted', () => {
      const { judgements } = run([comment('hello', 0), comment('HELLO', 20_000), comment('ｈｅｌｌｏ', 40_000)]);
      expect(judgements.map((j) => j.verdict)).toEqual(['allow', 'allow', 'delete']);
      expect(judgements[2]).toMatchObject({ labels: ['repeat'], rule: 'repeat', score: 0.7 });
    });

    it('given repeats further apart than the window (by occurredAt), when judged, then they are allowed', () => {
      const { judgements } = run([comment('hello', 0), comment('hello', 30_000), comment('hello', 60_000)]);
      // the first left the window at exactly 60 000 ms
      expect(judgements.map((j) => j.verdict)).toEqual(['allow', 'allow', 'allow']);
    });

    it('given the same text from another user, when judged, then their own history is separate', () => {
      const a = run([comment('hello', 0), comment('hello', 1)]);
      const b = judge(comment('hello', 2, { userId: 'u2' }), undefined, WORDS, S);
      expect(a.judgements.map((j) => j.verdict)).toEqual(['allow', 'allow']);
      expect(b.judgement.verdict).toBe('allow');
    });
  });

  describe('flood', () => {
    const nine = (step: number): CommentToJudge[] => Array.from({ length: 9 }, (_, i) => comment(`msg ${i}`, i * step));

    it('given a 9th comment within 10 s, when judged, then it is deleted as a flood', () => {
      const { judgements } = run(nine(1_000));
      expect(judgements.slice(0, 8).every((j) => j.verdict === 'allow')).toBe(true);
      expect(judgements[8]).toMatchObject({ verdict: 'delete', labels: ['flood'], rule: 'flood', score: 0.6 });
    });

    it('given 9 comments over more than the window, when judged, then all are allowed', () => {
      const { judgements } = run(nine(1_250)); // the 9th is at 10 000 ms: the 1st has left
      expect(judgements.every((j) => j.verdict === 'allow')).toBe(true);
    });
  });

  it('given a comment that breaks several rules, when judged, then all are labelled and the strongest decides', () => {
    const { judgements } = run([comment('badword', 0), comment('badword', 1), comment('BADWORD', 2)]);
    expect(judgements[2]).toMatchObject({
      verdict: 'delete',
      labels: ['wordlist', 'repeat'],
      rule: 'wordlist:badword',
      score: 0.99,
    });
  });

  describe('mute', () => {
    it('given a third delete within the offense window, when judged, then the user is muted until occurredAt + muteMs', () => {
      const { judgements, history } = run([
        comment('badword', 0),
        comment('fine', 1_000),
        comment('example.com', 100_000),
        comment('x'.repeat(30), 200_000),
      ]);
      expect(judgements.map((j) => j.mute)).toEqual([null, null, null, expect.anything()]);
      expect(judgements[3]!.mute).toEqual({ untilMs: 800_000, kind: 'shadow', reason: 'repeat offender: char-run' });
      expect(history!.mutedUntil).toBe(800_000);
    });

    it('given muteKind visible, when muting, then the mute is visible and the reason lists every label', () => {
      const { judgements } = run(
        [comment('badword', 0), comment('badword', 1), comment('badword', 2)],
        { ...S, muteKind: 'visible' },
      );
      expect(judgements[2]!.mute).toEqual({ untilMs: 600_002, kind: 'visible', reason: 'repeat offender: wordlist,repeat' });
    });

    it('given offenses spread wider than the offense window, when judged, then there is no mute', () => {
      const { judgements, history } = run([comment('badword', 0), comment('badword', 300_000), comment('badword', 600_001)]);
      expect(judgements.every((j) => j.verdict === 'delete' && j.mute === null)).toBe(true);
      expect(history!.offenses).toEqual([300_000, 600_001]);
    });

    it('given a muted user, when they offend again during the mute, then the mute is not re-issued; after it, the count starts afresh', () => {
      const offend = (at: number): CommentToJudge => comment(`badword ${at}`, at);
      const { judgements } = run([offend(0), offend(1), offend(2), offend(3), offend(4), offend(5), offend(700_000)]);
      expect(judgements.map((j) => j.mute?.untilMs ?? null)).toEqual([null, null, 600_002, null, null, null, null]);
      // three more offenses (3, 4, 5) accumulated during the mute; the one at 700 000 is within
      // the window of none of them (> 600 000 ms later), so it is the first of a new count
      const later = run([offend(0), offend(1), offend(2), offend(700_000), offend(700_001), offend(700_002)]);
      expect(later.judgements.map((j) => j.mute?.untilMs ?? null)).toEqual([null, null, 600_002, null, null, 1_300_002]);
    });

    it('given offensesToMute 0, when offending, then nobody is muted', () => {
      const { judgements } = run([comment('badword', 0), comment('badword', 1), comment('badword', 2)], { ...S, offensesToMute: 0 });
      expect(judgements.every((j) => j.mute === null)).toBe(true);
    });
  });

  describe('determinism', () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    const script = (): CommentToJudge[] => [
      comment('hello', 0, { eventId: 'a' }),
      comment('badword', 1_000, { eventId: 'b' }),
      comment('hello', 2_000, { eventId: 'c' }),
      comment('HELLO', 3_000, { eventId: 'd' }),
      comment('example.com', 4_000, { eventId: 'e' }),
      comment('z'.repeat(20), 5_000, { eventId: 'f' }),
    ];

    it('given the same inputs twice, at different wall-clock times, when judged, then the outputs are identical', () => {
      vi.useFakeTimers();
      vi.setSystemTime(0);
      const first = run(script());
      vi.setSystemTime(new Date('2031-01-01T00:00:00Z'));
      const second = run(script());
      expect(second).toEqual(first);
      expect(first.judgements.map((j) => j.verdict)).toEqual(['allow', 'delete', 'allow', 'delete', 'delete', 'delete']);
      expect(first.judgements.map((j) => j.mute?.untilMs ?? null)).toEqual([null, null, null, null, 604_000, null]);
    });

    it('given a history, when judging, then the input history is not mutated', () => {
      const before = deepFreeze({ recent: [{ key: 'hello', at: 0 }], offenses: [10], mutedUntil: null } satisfies UserHistory);
      const copy = structuredClone(before);
      expect(() => judge(comment('hello', 100), before, WORDS, S)).not.toThrow();
      expect(before).toEqual(copy);
    });
  });

  describe('bounded history', () => {
    it('given a long burst, when judged, then at most MAX_RECENT recent entries are kept', () => {
      const { history } = run(Array.from({ length: 500 }, (_, i) => comment(`m${i}`, i)));
      expect(history!.recent.length).toBe(MAX_RECENT);
      expect(history!.recent.at(-1)).toEqual({ key: 'm499', at: 499 });
      expect(history!.offenses.length).toBeLessThanOrEqual(S.offensesToMute);
    });

    it('given comments spread in time, when judged, then entries older than the windows are pruned', () => {
      const { history } = run([comment('a', 0), comment('b', 30_000), comment('c', 100_000), comment('badword', 1_000_000)]);
      expect(history!.recent).toEqual([{ key: 'badword', at: 1_000_000 }]);
      const later = judge(comment('ok', 2_000_000), history, WORDS, S).history;
      expect({ ...later, rep: undefined }).toEqual({ recent: [{ key: 'ok', at: 2_000_000 }], offenses: [], mutedUntil: null, rep: undefined });
      // The removal's weight on the reputation outlasts the windows: decayed over 1,000 s, less the credit of one good comment.
      expect(later.rep!.s).toBeCloseTo(S.reputation.deleteWeight * 0.5 ** (1_000_000 / S.reputation.halfLifeMs) - S.reputation.goodCredit, 5);
    });

    it('given an expired mute, when the user comments again, then mutedUntil is cleared', () => {
      const muted: UserHistory = { recent: [], offenses: [], mutedUntil: 50 };
      expect(judge(comment('hi', 49), muted, WORDS, S).history.mutedUntil).toBe(50);
      expect(judge(comment('hi', 50), muted, WORDS, S).history.mutedUntil).toBeNull();
    });
  });
});

describe('parseWordList', () => {
  it('given comments, blanks, CRLF, a BOM and duplicates, when parsed, then only the entries remain, in order', () => {
    const text = '\uFEFF# header\r\nbadword\r\n\r\n  scam coin   # trailing note\n#off\nbadword\n垃圾广告\n   \n';
    expect(parseWordList(text)).toEqual(['badword', 'scam coin', '垃圾广告']);
  });

  it('given the shipped default list, when parsed, then it adds nothing itself: the operator\'s words go on top of the base it includes', () => {
    const text = fs.readFileSync(DEFAULT_WORDLIST_PATH, 'utf8');
    expect(parseWordList(text)).toEqual([]);
    expect(parseWordListLines(text)).toEqual([{ op: 'include', source: 'wordlist.base.txt' }]);
  });
});

describe('WordListFile', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });
  function tempList(content: string): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wordlist-'));
    dirs.push(dir);
    const file = path.join(dir, 'words.txt');
    fs.writeFileSync(file, content);
    return file;
  }
  const hit = (f: WordListFile, text: string): string | undefined => f.current().match(skeleton(text));

  it('given a list file, when it is rewritten, then refresh picks the new list up without a restart', () => {
    const file = tempList('badword\n');
    const list = new WordListFile(file);
    expect(hit(list, 'a badword')).toBe('badword');
    expect(list.refresh()).toBe(false); // nothing changed

    fs.writeFileSync(file, '# now\nnewword\n');
    expect(list.refresh()).toBe(true);
    expect(list.words()).toEqual(['newword']);
    expect(hit(list, 'a badword')).toBeUndefined();
    expect(hit(list, 'a n3ww0rd')).toBe('newword');
    expect(list.refresh()).toBe(false);
  });

  it('given an unchanged stamp, when refreshing, then the file is not re-read; a changed mtime is', () => {
    const file = tempList('badword\n');
    const list = new WordListFile(file);
    const old = new Date(Date.now() - 3_600_000);
    fs.utimesSync(file, old, old);
    expect(list.refresh()).toBe(false); // stamp changed, content the same
    fs.writeFileSync(file, 'goodwrd\n'); // same size...
    fs.utimesSync(file, old, old); // ...and the same mtime: indistinguishable by stat
    expect(list.refresh()).toBe(false);
    const older = new Date(old.getTime() - 1_000);
    fs.utimesSync(file, older, older);
    expect(list.refresh()).toBe(true);
    expect(list.words()).toEqual(['goodwrd']);
  });

  it('given the file disappears, when refreshing, then the previous list stays in use until it returns', () => {
    const file = tempList('badword\n');
    const list = new WordListFile(file);
    fs.rmSync(file);
    expect(list.refresh()).toBe(false);
    expect(list.error).toBeInstanceOf(Error);
    expect(hit(list, 'badword')).toBe('badword');
    fs.writeFileSync(file, 'scamcoin\n');
    expect(list.refresh()).toBe(true);
    expect(list.error).toBeUndefined();
    expect(hit(list, 'scamcoin')).toBe('scamcoin');
  });

  it('given a missing file, when constructed, then it is a configuration error', () => {
    expect(() => new WordListFile(path.join(os.tmpdir(), 'no-such-dir-xyz', 'words.txt'))).toThrow(ConfigError);
  });

  it('given the shipped default list, when loaded, then it matches the maintained lists in the three languages', () => {
    const list = new WordListFile(DEFAULT_WORDLIST_PATH);
    expect(hit(list, 'ＦＵＣＫ you')).toBe('fuck');
    expect(hit(list, '你这个傻逼')).toBe('傻逼');
    expect(hit(list, 'ﾌｧｯｸ')).toBe('ファック');
    expect(hit(list, '草')).toBeUndefined();
  });
});

describe('moderationProjection (what the runner folds)', () => {
  const room = 'r-mod';
  const keys = roomKeys('t:', 'moderation', 1, room);
  const events = ['hello', 'a badword here', 'fine'].map((text, i) => ({
    offset: 10 + i,
    partition: 0,
    event: makeEvent({ roomId: room, actor: { userId: 'u1', role: 'viewer' }, occurredAt: 1_700_000_000_000 + i * 1000, payload: postComment(text) }),
  }));

  it('given a batch, when folded, then its effect is the decisions moderate() makes, as events to emit, and Redis commands on its own per-user histories only', () => {
    const p = moderationProjection(S, () => WORDS).forBatch!();
    const r = foldRoom(p, { fence: undefined, state: p.initial() }, events, keys);
    expect(new Set(r.cmds.map((c) => c.op))).toEqual(new Set(['fieldsExpire', 'fieldSet']));
    expect(r.cmds.every((c) => 'index' in c && c.key === keys.key('users') && c.index === keys.key('users:exp'))).toBe(true);
    expect(r.deltas).toEqual([]);
    expect(r.emits.map((e) => e.payload.type)).toEqual(['ModerationDecided', 'CommentDeleted']);
    const bad = events[1]!.event;
    expect(r.emits.map((e) => e.eventId)).toEqual([derivedEventId(bad.eventId, 'decided', bad.occurredAt), derivedEventId(bad.eventId, 'deleted', bad.occurredAt)]);
    expect(r.meta.fence).toBe(12);
    // Redelivered: the fence skips it, nothing is emitted twice.
    expect(foldRoom(p, r.meta, events, keys).emits).toEqual([]);
  });

  it('given a changing word list, when batches are folded, then the list is read once per batch', () => {
    let reads = 0;
    const p = moderationProjection(S, () => {
      reads++;
      return WORDS;
    });
    const batch = p.forBatch!();
    foldRoom(batch, { fence: undefined, state: batch.initial() }, events, keys);
    expect(reads).toBe(1);
  });
});

describe('reputation', () => {
  const R = { ...S, offensesToMute: 0, reputation: { ...S.reputation, holdAt: 3, shadowAt: 5, halfLifeMs: 3_600_000, goodCredit: 0.5 } };
  const HOUR = 3_600_000;

  it('given removals in a room, when the score reaches holdAt, then the user\'s clean comments are held by default', () => {
    const { judgements, history } = run([comment('badword 1', 0), comment('badword 2', 1_000), comment('badword 3', 2_000), comment('badword 4', 3_000), comment('hello there', 4_000)], R);
    expect(judgements.slice(0, 4).map((j) => j.verdict)).toEqual(['delete', 'delete', 'delete', 'delete']);
    expect(judgements[4]).toMatchObject({ verdict: 'hold', rule: 'reputation', labels: ['reputation'] });
    expect(judgements[4]!.score).toBeGreaterThan(0);
    // Four removals a second apart, decayed a little; a hold for reputation alone adds nothing.
    const expected = [0, 1_000, 2_000, 3_000].reduce((a, t) => a + 0.5 ** ((4_000 - t) / HOUR), 0);
    expect(history!.rep!.s).toBeCloseTo(expected, 3);
  });

  it('given the other rooms\' share, when the total reaches holdAt, then a clean comment in a fresh room is held', () => {
    const fresh = judge(comment('hello', 0), undefined, WORDS, R, 2.9);
    expect(fresh.judgement.verdict).toBe('allow');
    const held = judge(comment('hello', 0), undefined, WORDS, R, 3);
    expect(held.judgement).toMatchObject({ verdict: 'hold', rule: 'reputation' });
  });

  it('given a score at shadowAt, then the user is shadow-muted once, with the reason', () => {
    const { judgement, history } = judge(comment('badword', 0), undefined, WORDS, R, 4.5);
    expect(judgement.verdict).toBe('delete');
    expect(judgement.mute).toMatchObject({ kind: 'shadow', untilMs: R.reputation.muteMs });
    expect(judgement.mute!.reason).toMatch(/^reputation 5\.50 >= 5/);
    // Not again while the mute lasts.
    expect(judge(comment('badword', 1_000), history, WORDS, R, 4.5).judgement.mute).toBeNull();
  });

  it('given time and good behaviour, then the score decays below holdAt and comments flow again', () => {
    const start: UserHistory = { recent: [], offenses: [], mutedUntil: null, rep: { s: 4, at: 0 } };
    expect(judge(comment('hi', 0), start, WORDS, R).judgement.verdict).toBe('hold');
    // One half-life later: 2 < 3.
    expect(judge(comment('hi', HOUR), start, WORDS, R).judgement.verdict).toBe('allow');
    // Credit per good comment: 3.4 → allowed at 2.9 only after one more credited comment.
    const { judgements } = run([comment('a', 0), comment('b', 1), comment('c', 2)], R, { recent: [], offenses: [], mutedUntil: null, rep: { s: 3.4, at: 0 } });
    expect(judgements.map((j) => j.verdict)).toEqual(['hold', 'hold', 'hold']);
    const { judgements: j2 } = run([comment('a', 0), comment('b', 1)], R, { recent: [], offenses: [], mutedUntil: null, rep: { s: 2.9, at: 0 } });
    expect(j2.map((j) => j.verdict)).toEqual(['allow', 'allow']);
  });

  it('given both thresholds off, then no score is kept', () => {
    const off = { ...R, reputation: { ...R.reputation, holdAt: 0, shadowAt: 0 } };
    const { history } = run([comment('badword', 0)], off);
    expect(history!.rep).toBeUndefined();
  });

  it('given the model stage\'s removal, then it weighs on the author\'s share, written to the user\'s reputation hash', () => {
    const keys = roomKeys('t:', 'moderation', 1, 'room-r');
    const store = { key: (u: string) => `t:reputation:{${u}}`, read: async () => new Map() };
    const p = moderationProjection(R, () => WORDS, store);
    const decided = makeEvent({
      eventId: 'd1',
      roomId: 'room-r',
      actor: { userId: 'moderation-model', role: 'system' },
      occurredAt: 5_000,
      payload: { type: 'ModerationDecided', targetEventId: 'c1', targetUserId: 'u9', verdict: 'delete', labels: ['model'], score: 0.99, rule: 'model' },
    });
    const r = foldRoom(p, { fence: undefined, state: {} }, [{ offset: 1, partition: 0, event: decided }], keys);
    expect(r.external).toEqual([{ key: 't:reputation:{u9}', field: 'room-r', value: JSON.stringify({ s: R.reputation.deleteWeight, at: 5_000 }), ttlMs: expect.any(Number) }]);
    expect(r.emits).toEqual([]);
    // The rules' own decisions (actor `moderation`) are not counted twice.
    const own = makeEvent({ ...decided, eventId: 'd2', actor: { userId: 'moderation', role: 'system' } });
    expect(foldRoom(p, { fence: undefined, state: {} }, [{ offset: 2, partition: 0, event: own }], keys).external).toEqual([]);
  });

  it('given a batch, when prepared, then a comment is judged with the other rooms\' shares decayed to its time', async () => {
    const store = {
      key: (u: string) => `t:reputation:{${u}}`,
      read: async (users: readonly string[]) => new Map(users.map((u) => [u, new Map([['room-a', { s: 2, at: 0 }], ['room-b', { s: 2, at: 0 }], ['here', { s: 100, at: 0 }]])])),
    };
    const p = moderationProjection(R, () => WORDS, store);
    const ev = makeEvent({ eventId: 'c9', roomId: 'here', actor: { userId: 'u1', role: 'viewer' }, occurredAt: 1, payload: postComment('hello') });
    const batch = await p.prepare!([ev]);
    // 2 + 2 from the other rooms (this room's stored share is not read: the fold has its own) ≥ holdAt 3.
    const r = foldRoom(batch, { fence: undefined, state: {} }, [{ offset: 1, partition: 0, event: ev }], roomKeys('t:', 'moderation', 1, 'here'));
    expect(r.emits.map((e) => e.payload)).toEqual([expect.objectContaining({ type: 'ModerationDecided', verdict: 'hold', rule: 'reputation' })]);
    // An hour later the others have halved: 2 < 3, allowed.
    const later = makeEvent({ ...ev, eventId: 'c10', occurredAt: HOUR });
    const r2 = foldRoom(await p.prepare!([later]), { fence: undefined, state: {} }, [{ offset: 1, partition: 0, event: later }], roomKeys('t:', 'moderation', 1, 'here'));
    expect(r2.emits).toEqual([]);
  });
});
