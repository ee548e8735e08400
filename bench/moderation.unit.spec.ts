/** The moderation bench's pure parts: its bad word against the shipped list, the share of bad comments, a step's verdict, the lag summary, the final line. */
import { describe, expect, it } from 'vitest';
import { defaultModerationSettings, judge } from '../pipelines/moderation/rules.ts';
import { DEFAULT_WORDLIST_PATH, WordListFile } from '../pipelines/moderation/wordlist.ts';
import { generatedTexts } from './lib/texts.ts';
import { BAD_WORD, badText, isBad, lagSummary, moderationFinalLines, stepVerdict, type ModerationResult, type ModerationStep } from './scenarios/moderation.ts';

const LIMITS = { removalP95Ms: 2000, lagP95Sec: 1 };
const shipped = new WordListFile(DEFAULT_WORDLIST_PATH).current();
const judged = (text: string, i = 0) =>
  judge({ eventId: `e${i}`, userId: `u${i}`, role: 'viewer', text, occurredAt: 1_000 + i }, undefined, shipped, defaultModerationSettings).judgement;

describe('the bad comments', () => {
  it('given the shipped word list, when a comment carries the bench\'s bad word, then judge removes it for that word', () => {
    for (const [i, text] of ['草', 'かわいい', 'nice play', '然然超可爱', ...generatedTexts(50)].entries()) {
      const j = judged(badText(text), i);
      expect(j.verdict).toBe('delete');
      expect(j.rule).toBe(`wordlist:${BAD_WORD}`);
    }
  });

  it('given the same texts without it, then the word list lets them through', () => {
    for (const [i, text] of generatedTexts(50).entries()) expect(judged(text, i).labels).not.toContain('wordlist');
  });

  it('spreads exactly the share asked for', () => {
    const n = (share: number, len: number) => Array.from({ length: len }, (_, i) => isBad(i, share)).filter(Boolean).length;
    expect(n(0.05, 1000)).toBe(50);
    expect(n(0.05, 20)).toBe(1);
    expect(n(1, 7)).toBe(7);
    // Never two in a row at a small share.
    expect(Array.from({ length: 100 }, (_, i) => isBad(i, 0.05) && isBad(i + 1, 0.05)).some(Boolean)).toBe(false);
  });
});

describe('a step\'s verdict', () => {
  const ok = { rate: 800, achievedRate: 800, produceErrors: 0, bad: 1200, missing: 0, removalP95Ms: 900, lagP95Sec: 0.3 };

  it('holds within the limits, at the limits included', () => {
    expect(stepVerdict(ok, LIMITS)).toBeUndefined();
    expect(stepVerdict({ ...ok, removalP95Ms: 2000, lagP95Sec: 1 }, LIMITS)).toBeUndefined();
  });

  it('does not hold past either limit', () => {
    expect(stepVerdict({ ...ok, removalP95Ms: 2001 }, LIMITS)).toBe('removal p95 2001 ms > 2000 ms');
    expect(stepVerdict({ ...ok, lagP95Sec: 1.2 }, LIMITS)).toBe('lag p95 1.2 s > 1 s');
  });

  it('does not hold with a bad comment missing, whatever the latencies', () => {
    expect(stepVerdict({ ...ok, missing: 1 }, LIMITS)).toBe('1 of 1200 bad comments not removed');
  });

  it('does not hold on what it cannot measure: no bad comment, no removal at all (NaN), a produce error, a rate not reached', () => {
    expect(stepVerdict({ ...ok, bad: 0 }, LIMITS)).toBe('no bad comment was sent');
    expect(stepVerdict({ ...ok, removalP95Ms: NaN }, LIMITS)).toMatch(/^removal p95/);
    expect(stepVerdict({ ...ok, lagP95Sec: NaN }, LIMITS)).toMatch(/^lag p95/);
    expect(stepVerdict({ ...ok, produceErrors: 3 }, LIMITS)).toBe('3 produce errors');
    expect(stepVerdict({ ...ok, achievedRate: 700 }, LIMITS)).toBe('the load reached only 700/s');
  });
});

describe('lag summary', () => {
  it('gives p95 and max in records and in seconds at the step\'s record rate', () => {
    const samples = Array.from({ length: 20 }, (_, i) => i * 10); // 0 .. 190
    expect(lagSummary(samples, 100)).toEqual({ samples: 20, p95Records: 180, maxRecords: 190, p95Sec: 1.8, maxSec: 1.9 });
  });

  it('is NaN without samples (a step whose lag was never read does not hold)', () => {
    expect(lagSummary([], 100).p95Sec).toBeNaN();
  });
});

describe('final line', () => {
  const step = (rate: number, held: boolean, p95: number, lagSec: number, why?: string) =>
    ({ rate, held, removal: { p95 }, lag: { p95Sec: lagSec }, ...(why ? { why } : {}) }) as unknown as ModerationStep;
  const result = (highestHeld: number, steps: ModerationStep[]) => ({ highestHeld, steps }) as unknown as ModerationResult;

  it('names the highest rate held with that step\'s figures', () => {
    expect(moderationFinalLines(result(800, [step(400, true, 310, 0.1), step(800, true, 420.5, 0.25), step(1600, false, 2600, 1.4, 'x')]))).toEqual([
      'moderation: highest rate held 800 comments/s (removal p95 420.5 ms, lag p95 0.25 s)',
    ]);
  });

  it('says 0 and why when nothing held', () => {
    expect(moderationFinalLines(result(0, [step(400, false, 2600, 1.4, 'removal p95 2600 ms > 2000 ms')]))).toEqual([
      'moderation: highest rate held 0 comments/s (removal p95 2600 ms, lag p95 1.4 s) — 400/s not held: removal p95 2600 ms > 2000 ms',
    ]);
  });
});
