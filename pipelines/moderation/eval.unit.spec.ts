/**
 * The eval's arithmetic and its summary line, and the rules stage over the
 * labelled fixtures (no model, no chat logs: nothing but files of the repo).
 */
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config.ts';
import { confusion, DEFAULT_LABELLED_PATH, evalLine, judgeAlone, parseLabelled, runEval, settingsFrom, type Labelled } from './eval.ts';
import { WordListFile, DEFAULT_WORDLIST_PATH } from './wordlist.ts';

const LINE = /^moderation eval: precision (0|1)\.\d\d, recall (0|1)\.\d\d, flagged on real chat (\d+\.\d\d|n\/a) %$/;

describe('confusion', () => {
  const items: Labelled[] = [
    { text: 'a', lang: 'en', label: 'abusive' },
    { text: 'b', lang: 'en', label: 'abusive' },
    { text: 'c', lang: 'en', label: 'clean' },
    { text: 'd', lang: 'en', label: 'clean' },
  ];

  it('given flags, when counted, then precision and recall follow', () => {
    expect(confusion(items, [true, false, true, false])).toEqual({ tp: 1, fp: 1, fn: 1, tn: 1, precision: 0.5, recall: 0.5 });
    expect(confusion(items, [true, true, false, false])).toMatchObject({ precision: 1, recall: 1 });
  });

  it('given nothing flagged, when counted, then precision is 0, not NaN', () => {
    expect(confusion(items, [false, false, false, false])).toMatchObject({ precision: 0, recall: 0 });
  });
});

describe('evalLine', () => {
  it('given the combined figures, when formatted, then it is the exact summary line', () => {
    expect(evalLine(0.954, 0.5466, 0.3412)).toBe('moderation eval: precision 0.95, recall 0.55, flagged on real chat 0.34 %');
    expect(evalLine(1, 0, undefined)).toBe('moderation eval: precision 1.00, recall 0.00, flagged on real chat n/a %');
    expect(evalLine(0.954, 0.5466, 0.3412)).toMatch(LINE);
  });
});

describe('the labelled set', () => {
  const items = parseLabelled(fs.readFileSync(DEFAULT_LABELLED_PATH, 'utf8'));

  it('given the fixture, when read, then it has a few hundred comments in three languages, both labels in each', () => {
    expect(items.length).toBeGreaterThanOrEqual(300);
    for (const lang of ['en', 'zh', 'ja']) {
      expect(items.filter((i) => i.lang === lang && i.label === 'abusive').length, lang).toBeGreaterThanOrEqual(40);
      expect(items.filter((i) => i.lang === lang && i.label === 'clean').length, lang).toBeGreaterThanOrEqual(50);
    }
  });

  it('given the tricky clean comments the issue names, when looked up, then they are there and labelled clean', () => {
    const clean = new Set(items.filter((i) => i.label === 'clean').map((i) => i.text));
    for (const t of ['草', 'www', '8888', '死ぬほど笑った', 'killed it']) expect(clean.has(t), t).toBe(true);
  });

  it('given a malformed line, when parsed, then it names the line', () => {
    expect(() => parseLabelled('{"text": "x", "label": "abusive"}\n{"text": "y"}\n', 'f.jsonl')).toThrow(/f\.jsonl:2/);
  });

  it('given the rules stage and the shipped list, when run over the set, then it flags no clean comment', () => {
    const cfg = loadConfig({});
    const words = new WordListFile(DEFAULT_WORDLIST_PATH).current();
    const fp = items.filter((i) => i.label === 'clean' && judgeAlone(i.text, words, settingsFrom(cfg)) !== undefined);
    expect(fp.map((i) => i.text)).toEqual([]);
  });
});

describe('runEval without the model and the chat logs', () => {
  it('given the labelled set, when run, then it prints a table per stage and ends with the summary line', async () => {
    const cfg = loadConfig({});
    const out: string[] = [];
    const r = await runEval({
      cfg,
      words: new WordListFile(DEFAULT_WORDLIST_PATH).current(),
      wordsLabel: 'shipped list',
      labelledPath: DEFAULT_LABELLED_PATH,
      dataDir: undefined,
      model: false,
      out: (l) => out.push(l),
      log: () => {},
    });
    expect(out.at(-1)).toBe(r.line);
    expect(r.line).toMatch(LINE);
    expect(r.line).toMatch(/flagged on real chat n\/a %$/);
    expect(out.some((l) => /^rules\s+\d+\s+0\s+\d+/.test(l))).toBe(true); // no false positive
    expect(r.combined).toEqual(r.rules); // without the model, combined is the rules
  });
});
