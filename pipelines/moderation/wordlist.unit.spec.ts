/**
 * The word list as shipped: the maintained LDNOOBW lists (npm `naughty-words`)
 * for English, Chinese and Japanese, curated for live chat (wordlist.base.txt),
 * with the operator's file on top, all reloadable; and whole-word matching.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../core/errors.ts';
import { skeleton } from './normalize.ts';
import { wordMatcher } from './rules.ts';
import { BASE_WORDLIST_PATH, DEFAULT_WORDLIST_PATH, loadWordList, packageWords, parseWordListLines, WordListFile } from './wordlist.ts';

describe('parseWordListLines', () => {
  it('given additions, whole words, removals and includes, when parsed, then each line says what it does, in order', () => {
    const text = '# c\nbadword\n=ass   # whole\n- spam coin\n%include other.txt\n%include naughty-words:zh,ja\n=\n-\n';
    expect(parseWordListLines(text)).toEqual([
      { op: 'add', word: 'badword', whole: false },
      { op: 'add', word: 'ass', whole: true },
      { op: 'remove', word: 'spam coin' },
      { op: 'include', source: 'other.txt' },
      { op: 'include', source: 'naughty-words:zh,ja' },
    ]);
  });

  it('given an unknown directive, when parsed, then it is an error rather than a silently dropped list', () => {
    expect(() => parseWordListLines('%inclde base.txt\n')).toThrow(/unknown directive/);
    expect(() => parseWordListLines('%include\n')).toThrow(/unknown directive/);
  });
});

describe('packageWords (naughty-words)', () => {
  it('given a language, when loaded, then every kept entry is a whole word and single CJK characters and digits are dropped', () => {
    for (const lang of ['en', 'zh', 'ja']) {
      const p = packageWords(lang);
      expect(p.kept.length).toBeGreaterThan(100);
      expect(p.kept.length + p.dropped.length).toBe(p.listed);
      expect(p.kept.every((e) => e.whole)).toBe(true);
    }
    const zh = packageWords('zh');
    expect(zh.dropped.map((d) => d.word)).toEqual(expect.arrayContaining(['性', '奶', '逼', '乳']));
    expect(zh.kept.map((e) => e.word)).toContain('傻逼');
    expect(packageWords('ja').dropped.map((d) => d.word)).toContain('3p'); // would read as 'ep'
  });

  it('given an unknown language or a path, when loaded, then it is an error', () => {
    expect(() => packageWords('xx')).toThrow(/no list/);
    expect(() => packageWords('../x')).toThrow(/not a language/);
  });
});

describe('wordMatcher with whole-word entries', () => {
  const m = wordMatcher([
    { word: 'scat', whole: true },
    { word: 'cock', whole: true },
    { word: 'ass', whole: true },
    { word: 'kill yourself', whole: true },
    { word: 'レイプ', whole: true },
    { word: 'ディック', whole: true },
    { word: '操你妈', whole: true },
    'spamlink',
  ]);
  const hit = (text: string) => m.match(skeleton(text));

  it('given a Latin entry, when it is inside a longer Latin word, then it does not match; alone, or beside CJK, it does', () => {
    expect(hit('a glass of moscato')).toBeUndefined();
    expect(hit('the peacock and the cocktail')).toBeUndefined();
    expect(hit('first class assignment')).toBeUndefined();
    expect(hit('what a cock')).toBe('cock');
    expect(hit('ＣＯＣＫ!!')).toBe('cock');
    expect(hit('c.o.c.k')).toBe('cock');
    expect(hit('你是cock吗')).toBe('cock');
    expect(hit('just KILL YOURSELF')).toBe('kill yourself');
    expect(hit('kill yourselfish')).toBeUndefined();
  });

  it('given a katakana entry, when it is inside a longer katakana word, then it does not match; beside kana or kanji, it does', () => {
    expect(hit('グレイプニル見ろ')).toBeUndefined();
    expect(hit('ハイメディックだぞ')).toBeUndefined();
    expect(hit('やべーぞレイプだ')).toBe('レイプ');
    expect(hit('ﾃﾞｨｯｸ')).toBe('ディック'); // half-width katakana fold first
  });

  it('given a Han entry, when matched, then it is a substring (Han has no word boundaries)', () => {
    expect(hit('我操你妈的')).toBe('操你妈');
  });

  it('given a plain entry beside whole ones, when matched, then it keeps its own rule (4+ characters: anywhere)', () => {
    expect(hit('spamlinks here')).toBe('spamlink');
  });

  it('given several matching entries, when matched, then the one listed first wins', () => {
    expect(m.match(skeleton('spamlink cock scat'))).toBe('scat');
  });
});

describe('the shipped list (curated base + operator file)', () => {
  const list = new WordListFile(DEFAULT_WORDLIST_PATH);
  const hit = (text: string) => list.current().match(skeleton(text));

  it('given abuse in the three languages, in disguise too, when matched, then it is found', () => {
    for (const [text, word] of [
      ['fuck you', 'fuck'],
      ['f u c k', 'fuck'],
      ['fuckyou', 'fuck'],
      ['ｆｕｃｋ ｏｆｆ', 'fuck'],
      ['you stupid cunt', 'cunt'],
      ['kys', 'kys'],
      ['你就是个傻逼', '傻逼'],
      ['傻 逼', '傻逼'],
      ['nmsl', 'nmsl'],
      ['操你妈', undefined], // some entry of the 操你… family, whichever is listed first
      ['ﾌｧｯｸ', 'ファック'],
      ['このキチガイが', 'キチガイ'],
    ] as const) {
      if (word === undefined) expect(hit(text), text).toBeDefined();
      else expect(hit(text), text).toBe(word);
    }
  });

  it('given ordinary danmaku that the raw lists would flag, when matched, then nothing is found', () => {
    for (const text of [
      '草',
      'www',
      '8888',
      '死ぬほど笑った',
      'killed it',
      '真牛逼',
      '哇这个可动性可以',
      '奶琳',
      '一生わたしの奴隷になれ',
      'おじさん嫌いじゃないよ',
      'かわいい女の子',
      'エッチング',
      'グレイプニル見ろ',
      'ここの歌詞shita red big',
      'this time moscato',
      '不愧是和桃皇一个妈的',
      '老二次元',
      '3p',
      'ep 12 when',
      'ぶっ殺すと思った時には既に',
      'holy shit that was close',
      'this boss sucks',
    ]) {
      expect(hit(text), text).toBeUndefined();
    }
  });

  it('given the base file, when loaded, then it is the three package lists with the curation applied', () => {
    const base = loadWordList(BASE_WORDLIST_PATH);
    const words = new Set(base.entries.map((e) => skeleton(e.word)));
    expect(words.has('fuck') && words.has('傻逼') && words.has('ファック')).toBe(true);
    expect(['奴隷', '嫌い', 'sucks', 'ass', 'おっぱい'].some((w) => words.has(skeleton(w)))).toBe(false);
    expect(list.words().length).toBe(base.entries.length); // the operator's file adds nothing by default
  });
});

describe('WordListFile with includes', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });
  function tempDir(files: Record<string, string>): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wordlist-inc-'));
    dirs.push(dir);
    for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), content);
    return dir;
  }
  const hit = (f: WordListFile, text: string) => f.current().match(skeleton(text));

  it('given an operator file on top of a base, when loaded, then its additions and removals apply over the included entries', () => {
    const dir = tempDir({
      'base.txt': '%include naughty-words:zh\n-傻逼\nbasicword\n',
      'words.txt': '%include base.txt\n-basicword\n=zebra\n',
    });
    const list = new WordListFile(path.join(dir, 'words.txt'));
    expect(hit(list, '你这个傻逼')).toBeUndefined(); // removed by the base
    expect(hit(list, '傻比')).toBe('傻比'); // the rest of the package's zh list is there
    expect(hit(list, 'basicword')).toBeUndefined(); // removed by the operator
    expect(hit(list, 'a zebra')).toBe('zebra');
    expect(hit(list, 'zebras')).toBeUndefined(); // whole word
  });

  it('given an included file changes, when refreshed, then the change is picked up without a restart', () => {
    const dir = tempDir({ 'base.txt': 'alpha\n', 'words.txt': '%include base.txt\nbravo\n' });
    const list = new WordListFile(path.join(dir, 'words.txt'));
    expect(list.words()).toEqual(['alpha', 'bravo']);
    const old = new Date(Date.now() - 3_600_000);
    for (const f of ['base.txt', 'words.txt']) fs.utimesSync(path.join(dir, f), old, old);
    expect(list.refresh()).toBe(false);
    expect(list.refresh()).toBe(false); // stamps trusted now: nothing re-read
    fs.writeFileSync(path.join(dir, 'base.txt'), 'alpha\ncharlie\n');
    expect(list.refresh()).toBe(true);
    expect(list.words()).toEqual(['alpha', 'charlie', 'bravo']);
    expect(hit(list, 'charlie')).toBe('charlie');
  });

  it('given a bad edit (unknown directive, missing include), when refreshed, then the previous list stays in use and the error is kept', () => {
    const dir = tempDir({ 'words.txt': 'alpha\n' });
    const file = path.join(dir, 'words.txt');
    const list = new WordListFile(file);
    fs.writeFileSync(file, '%inclde base.txt\nalpha\n');
    expect(list.refresh()).toBe(false);
    expect(list.error?.message).toMatch(/unknown directive/);
    expect(hit(list, 'alpha')).toBe('alpha');
    fs.writeFileSync(file, '%include nowhere.txt\n');
    expect(list.refresh()).toBe(false);
    expect(list.error?.message).toMatch(/nowhere\.txt/);
    fs.writeFileSync(file, 'delta\n');
    expect(list.refresh()).toBe(true);
    expect(list.error).toBeUndefined();
  });

  it('given an include cycle or an unknown language, when constructed, then it is a configuration error', () => {
    const dir = tempDir({ 'a.txt': '%include b.txt\n', 'b.txt': '%include a.txt\n', 'c.txt': '%include naughty-words:qq\n' });
    expect(() => new WordListFile(path.join(dir, 'a.txt'))).toThrow(ConfigError);
    expect(() => new WordListFile(path.join(dir, 'c.txt'))).toThrow(ConfigError);
  });
});
