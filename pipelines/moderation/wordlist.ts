/**
 * The moderation word list as plain text files that operators can edit while
 * the pipeline runs: `refresh()` (one `stat` per file, cheap enough to call
 * before every batch) picks a change up without a restart.
 *
 * Format, one item per line; blank lines and '#' comments (a whole line, or
 * the rest of a line after ' #') are ignored:
 *
 *   word              add: 4+ characters or CJK match anywhere, shorter ones as whole tokens
 *   =word             add, matched as a whole word only (see `WordEntry` in rules.ts)
 *   -word             remove an entry listed above (by an include or an earlier line)
 *   %include SOURCE   add the entries of SOURCE at this point: another list file (a path
 *                     relative to this one) or `naughty-words:<lang>[,<lang>…]`, the
 *                     maintained lists of the `naughty-words` npm package (see `packageWords`)
 *
 * Entries are compared in `skeleton` form (additions, removals and comments
 * alike), so case, accents, full-width forms, look-alike letters and leetspeak
 * do not matter. The shipped list (wordlist.txt) includes the project's
 * curated base (wordlist.base.txt), which includes the package's lists; an
 * operator adds and removes words below that include, on top of it.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../core/errors.ts';
import { CJK, skeleton } from './normalize.ts';
import { wordMatcher, type WordEntry, type WordMatcher } from './rules.ts';

/** The list shipped with the project: the operator's file, which includes the curated base. */
export const DEFAULT_WORDLIST_PATH = fileURLToPath(new URL('./wordlist.txt', import.meta.url));
/** The project's curation of the maintained lists (what it keeps, drops and adds, and why). */
export const BASE_WORDLIST_PATH = fileURLToPath(new URL('./wordlist.base.txt', import.meta.url));

export type WordListLine = { op: 'add'; word: string; whole: boolean } | { op: 'remove'; word: string } | { op: 'include'; source: string };

/** The items of a word-list file, in order. An unknown `%` directive is an error (a typo must not silently drop a list). */
export function parseWordListLines(text: string): WordListLine[] {
  const out: WordListLine[] = [];
  for (const raw of text.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/)) {
    const line = raw.replace(/(?:^|\s)#.*$/, '').trim();
    if (line === '') continue;
    if (line.startsWith('%')) {
      const inc = /^%include\s+(\S+)$/.exec(line);
      if (!inc) throw new Error(`unknown directive "${line}" (expected "%include <file | naughty-words:<lang>[,<lang>…]>")`);
      out.push({ op: 'include', source: inc[1]! });
    } else if (line.startsWith('-')) {
      const word = line.slice(1).trim();
      if (word !== '') out.push({ op: 'remove', word });
    } else if (line.startsWith('=')) {
      const word = line.slice(1).trim();
      if (word !== '') out.push({ op: 'add', word, whole: true });
    } else out.push({ op: 'add', word: line, whole: false });
  }
  return out;
}

/** The entries a word-list file adds itself, in order, without comments, blanks or exact duplicates. */
export function parseWordList(text: string): string[] {
  const words: string[] = [];
  const seen = new Set<string>();
  for (const l of parseWordListLines(text)) {
    if (l.op !== 'add' || seen.has(l.word)) continue;
    seen.add(l.word);
    words.push(l.word);
  }
  return words;
}

export interface PackageList {
  lang: string;
  /** What the package lists for the language. */
  listed: number;
  kept: WordEntry[];
  dropped: { word: string; why: string }[];
}

const requireHere = createRequire(import.meta.url);
const packageLists = new Map<string, PackageList>();

/**
 * One language's list from the `naughty-words` package (the LDNOOBW lists),
 * read from node_modules once per process, with the rules every entry of it
 * gets (the project's further choices, entry by entry, are in wordlist.base.txt):
 *
 * - every entry is a whole word (`=`): the lists are written for search
 *   filters, and as substrings their Latin entries fire inside innocent words
 *   ('scat' in 'moscato', 'shit' in niconico's 'shita' command) and their
 *   katakana ones inside longer loanwords ('レイプ' in 'グレイプニル');
 * - single CJK characters are dropped: in chat a lone 性, 奶, 乳 or 逼 is part of
 *   ordinary words (可动性, 奶琳, 牛逼 "awesome") far more often than abuse;
 * - entries with digits are dropped: undoing leetspeak turns them into other
 *   words ('3p' would match 'ep', as in episode);
 * - entries with nothing left in skeleton form are dropped.
 */
export function packageWords(lang: string): PackageList {
  const cached = packageLists.get(lang);
  if (cached) return cached;
  if (!/^[a-z]{2,3}(?:-[A-Za-z0-9-]+)?$/.test(lang)) throw new Error(`naughty-words: "${lang}" is not a language code`);
  let listed: unknown;
  try {
    listed = requireHere(`naughty-words/${lang}.json`);
  } catch {
    throw new Error(`naughty-words has no list for "${lang}"`);
  }
  if (!Array.isArray(listed)) throw new Error(`naughty-words/${lang}.json is not a list`);
  const kept: WordEntry[] = [];
  const dropped: { word: string; why: string }[] = [];
  for (const word of listed as string[]) {
    const s = skeleton(word);
    if (s === '') dropped.push({ word, why: 'empty in skeleton form' });
    else if (/\p{N}/u.test(word.normalize('NFKC'))) dropped.push({ word, why: 'has digits (leetspeak would read it as another word)' });
    else if ([...s].length === 1 && CJK.test(s)) dropped.push({ word, why: 'a single CJK character' });
    else kept.push({ word, whole: true });
  }
  const list = { lang, listed: (listed as string[]).length, kept, dropped };
  packageLists.set(lang, list);
  return list;
}

/** What reading a list file (and what it includes) gives. */
interface Loaded {
  entries: WordEntry[];
  /** Every list file read, for change detection. */
  files: string[];
  /** Their contents, for telling a real change from a touch. */
  digest: string;
}

const MAX_INCLUDE_DEPTH = 8;

/** Reads a list file and its includes; throws on a missing file, a bad directive or an include cycle. */
export function loadWordList(file: string): Loaded {
  const entries = new Map<string, WordEntry>();
  const files: string[] = [];
  const hash = createHash('sha256');
  const visit = (p: string, stack: string[]): void => {
    const abs = path.resolve(p);
    if (stack.includes(abs)) throw new Error(`word list include cycle: ${[...stack, abs].join(' → ')}`);
    if (stack.length >= MAX_INCLUDE_DEPTH) throw new Error(`word list includes nest deeper than ${MAX_INCLUDE_DEPTH} at ${abs}`);
    const text = fs.readFileSync(abs, 'utf8');
    files.push(abs);
    hash.update(`${abs}\0${text}\0`);
    for (const l of parseWordListLines(text)) {
      if (l.op === 'add') {
        const key = skeleton(l.word);
        if (key !== '' && !entries.has(key)) entries.set(key, { word: l.word, whole: l.whole });
      } else if (l.op === 'remove') entries.delete(skeleton(l.word));
      else if (l.source.startsWith('naughty-words:')) {
        for (const lang of l.source.slice('naughty-words:'.length).split(',').filter(Boolean)) {
          for (const e of packageWords(lang).kept) {
            const key = skeleton(e.word);
            if (!entries.has(key)) entries.set(key, e);
          }
        }
      } else visit(path.resolve(path.dirname(abs), l.source), [...stack, abs]);
    }
  };
  visit(file, []);
  return { entries: [...entries.values()], files, digest: hash.digest('hex') };
}

/**
 * A file whose mtime is this close to "now" may still be written to within the
 * same mtime tick (coarse on some file systems) without its size or mtime
 * changing. Such a file is not trusted by its stamp: it is re-read (and
 * re-hashed) on every refresh until it has been quiet this long ("racy git").
 */
const RACY_MS = 2_000;

export class WordListFile {
  readonly path: string;
  #entries: WordEntry[] = [];
  #matcher: WordMatcher = wordMatcher([]);
  #hash = '';
  #files: string[] = [];
  /** inode, size and mtime of every file when last read; undefined = re-read on the next refresh. */
  #stamp: string | undefined;
  #error: Error | undefined;

  /** Reads the file (and its includes) now; a missing or unreadable one is a configuration error. */
  constructor(path: string) {
    this.path = path;
    try {
      this.#load();
    } catch (err) {
      throw new ConfigError(`moderation word list ${path} cannot be read`, [String((err as Error).message ?? err)]);
    }
  }

  /** The matcher for the list as last read. */
  current(): WordMatcher {
    return this.#matcher;
  }

  /** The entries as last read (includes resolved, removals applied). */
  words(): readonly string[] {
    return this.#entries.map((e) => e.word);
  }

  /** The entries with how each is matched. */
  entries(): readonly WordEntry[] {
    return this.#entries;
  }

  /** Why the last refresh could not read the list (the previous list stays in use), if it could not. */
  get error(): Error | undefined {
    return this.#error;
  }

  /**
   * Re-reads the list when the inode, size or mtime of one of its files
   * changed (or one was written very recently); true when the list's content
   * changed. A file that vanished, cannot be read or has a bad directive keeps
   * the previous list (see `error`). Write files atomically (write a temp
   * file, rename it over) so a half-written list is never picked up; an
   * in-place edit is picked up again once complete.
   */
  refresh(): boolean {
    try {
      if (this.#stamp !== undefined && this.#stamp === stampOf(this.#files).stamp) return false;
      const changed = this.#load();
      this.#error = undefined;
      return changed;
    } catch (err) {
      this.#error = err as Error;
      this.#stamp = undefined;
      return false;
    }
  }

  #load(): boolean {
    const loaded = loadWordList(this.path);
    // Stamped after reading: a write in between has an mtime of "now", which
    // the racy rule distrusts, so it is read again on the next refresh.
    const st = stampOf(loaded.files);
    this.#files = loaded.files;
    this.#stamp = st.racy ? undefined : st.stamp;
    if (loaded.digest === this.#hash) return false;
    this.#hash = loaded.digest;
    this.#entries = loaded.entries;
    this.#matcher = wordMatcher(this.#entries);
    return true;
  }
}

function stampOf(files: string[]): { stamp: string; racy: boolean } {
  let racy = false;
  const parts = files.map((f) => {
    const st = fs.statSync(f);
    if (Date.now() - st.mtimeMs < RACY_MS) racy = true;
    return `${f}:${st.ino}:${st.size}:${st.mtimeMs}`;
  });
  return { stamp: parts.join('|'), racy };
}
