/**
 * The moderation word list as a plain text file that operators can edit while
 * the pipeline runs: `refresh()` (one `stat`, cheap enough to call before every
 * batch) picks the change up without a restart.
 *
 * Format: one word or phrase per line; blank lines and '#' comments (a whole
 * line, or the rest of a line after ' #') are ignored. Entries are matched in
 * `skeleton` form, so case, accents, full-width forms, look-alike letters and
 * leetspeak do not matter.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../core/errors.ts';
import { wordMatcher, type WordMatcher } from './rules.ts';

/** The list shipped with the project (placeholder test words). */
export const DEFAULT_WORDLIST_PATH = fileURLToPath(new URL('./wordlist.txt', import.meta.url));

/** The entries of a word-list file, in order, without comments, blanks or exact duplicates. */
export function parseWordList(text: string): string[] {
  const words: string[] = [];
  const seen = new Set<string>();
  for (const line of text.replace(/^\uFEFF/, '').split(/\r\n|\n|\r/)) {
    const word = line.replace(/(?:^|\s)#.*$/, '').trim();
    if (word === '' || seen.has(word)) continue;
    seen.add(word);
    words.push(word);
  }
  return words;
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
  #words: string[] = [];
  #matcher: WordMatcher = wordMatcher([]);
  #hash = '';
  /** inode, size and mtime when last read; undefined = re-read on the next refresh. */
  #stamp: string | undefined;
  #error: Error | undefined;

  /** Reads the file now; a missing or unreadable file is a configuration error. */
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

  /** The entries as last read. */
  words(): readonly string[] {
    return this.#words;
  }

  /** Why the last refresh could not read the file (the previous list stays in use), if it could not. */
  get error(): Error | undefined {
    return this.#error;
  }

  /**
   * Re-reads the file when its inode, size or mtime changed (or it was written
   * very recently); true when the list's content changed. A file that vanished
   * or cannot be read keeps the previous list (see `error`). Write the file
   * atomically (write a temp file, rename it over) so a half-written list is
   * never picked up; an in-place edit is picked up again once complete.
   */
  refresh(): boolean {
    try {
      const st = fs.statSync(this.path);
      if (this.#stamp !== undefined && this.#stamp === stampOf(st)) return false;
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
    // Stat before reading: a write in between leaves an older stamp with newer
    // content, which only costs one more read, never a missed change.
    const st = fs.statSync(this.path);
    const text = fs.readFileSync(this.path, 'utf8');
    this.#stamp = Date.now() - st.mtimeMs < RACY_MS ? undefined : stampOf(st);
    const hash = createHash('sha256').update(text).digest('hex');
    if (hash === this.#hash) return false;
    this.#hash = hash;
    this.#words = parseWordList(text);
    this.#matcher = wordMatcher(this.#words);
    return true;
  }
}

function stampOf(st: fs.Stats): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}`;
}
