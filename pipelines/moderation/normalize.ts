/**
 * The comparison forms of a comment. Nothing here is ever shown to anyone: the
 * original text is what viewers see. These forms exist so that the trivial
 * disguises spammers use (full-width letters, accents, invisible characters,
 * Cyrillic/Greek letters that look Latin, s.p.a.c.i.n.g, l33t) do not defeat the
 * word list, the link check and repeat detection.
 *
 * - `normalizeText` is the key for repeats and the input to the link and
 *   character-run checks. It keeps digits and punctuation, because '1st' and
 *   'lst' or 'gg 2' and 'gg 3' are different comments.
 * - `skeleton` is for word-list matching only: it also undoes leetspeak and
 *   drops punctuation, which is too lossy for anything else.
 *
 * Both are pure, deterministic functions of their input (no locale: plain
 * `toLowerCase`, never `toLocaleLowerCase`), so live moderation and a replay agree.
 */

/**
 * Invisible characters that render as nothing (or as a blank) and are inserted to
 * split words ('sp\u200Bam'): zero-width space/joiners and direction marks
 * (U+200B–U+200F), word joiner and invisible operators (U+2060–U+2064), BOM/ZWNBSP
 * (U+FEFF), soft hyphen (U+00AD), Mongolian vowel separator (U+180E), every other
 * format character (\p{Cf}: bidi overrides, tag characters, ...), control
 * characters, the combining grapheme joiner (U+034F) and the Hangul fillers, which
 * are letters by category but draw nothing.
 */
const INVISIBLE = /[\u200B-\u200F\u2060-\u2064\uFEFF\u00AD\u180E\u034F\u115F\u1160\u3164\uFFA0\p{Cf}\p{Cc}]/gu;

/** Line breaks, tabs and the Braille blank count as spaces (before control characters are dropped). */
const SPACE_LIKE = /[\t\n\v\f\r\u0085\u2028\u2029\u2800]/gu;

/**
 * Diacritics: after NFD, accents are separate combining marks. We strip the
 * script-independent ones (\p{Script=Inherited}: U+0300–U+036F and the other
 * combining-diacritics blocks, variation selectors, Arabic harakat) — which is
 * every accent a Latin, Greek or Cyrillic letter decomposes to, and every mark
 * stacked on text for "Zalgo" noise. Marks that belong to a script (Devanagari
 * vowel signs, Thai tone marks) are kept, as are the kana voicing marks
 * U+3099/U+309A (が → か + U+3099): removing those would change the word, not
 * its decoration.
 */
const DIACRITIC = /(?![\u3099\u309A])(?=\p{M})\p{Script=Inherited}/gu;

/**
 * Letters of other scripts that look like Latin ones, applied after lower-casing.
 * Cyrillic: а е о р с х у і ј к м н т в ѕ (plus ԁ һ ӏ ԛ ԝ ү); Greek: α ο ρ ν κ τ ι ε
 * (plus υ χ); Latin variants: dotless ı, script ɑ/ɡ.
 */
const HOMOGLYPHS: Readonly<Record<string, string>> = {
  // Cyrillic
  а: 'a', е: 'e', о: 'o', р: 'p', с: 'c', х: 'x', у: 'y', і: 'i', ј: 'j', к: 'k',
  м: 'm', н: 'h', т: 't', в: 'b', ѕ: 's', ԁ: 'd', һ: 'h', ӏ: 'l', ԛ: 'q', ԝ: 'w', ү: 'y',
  // Greek
  α: 'a', ο: 'o', ρ: 'p', ν: 'v', κ: 'k', τ: 't', ι: 'i', ε: 'e', υ: 'u', χ: 'x',
  // Latin look-alikes
  ı: 'i', ɑ: 'a', ɡ: 'g',
};
const HOMOGLYPH_RE = new RegExp(`[${Object.keys(HOMOGLYPHS).join('')}]`, 'gu');

/**
 * Leetspeak, for word matching only: in `normalizeText` '5' must stay '5' ('gg 5'
 * is not 'gg s'), and even in `skeleton` it applies only to tokens that contain a
 * letter, so that a plain number ('455', '1337') is never read as a word.
 */
const LEET: Readonly<Record<string, string>> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', $: 's' };
const LEET_RE = /[013457@$]/g;

/** What a skeleton keeps inside a token: letters, their (script) marks, digits, and the leet symbols. */
const NOT_TOKEN_CHAR = /[^\p{L}\p{M}\p{N}@$]/gu;
const HAS_LETTER = /\p{L}/u;

/**
 * The form in which comments are compared (repeat keys, link and run checks):
 * NFKC (full-width/half-width and other compatibility forms: 'ＳＰＡＭ' → 'SPAM',
 * '𝐬𝐩𝐚𝐦' → 'spam'), lower-case, without diacritics ('späm' → 'spam') or invisible
 * characters ('sp\u200Bam' → 'spam'), with look-alike letters mapped to Latin
 * ('ѕрам' → 'spam'), whitespace runs collapsed to one space, trimmed.
 */
export function normalizeText(s: string): string {
  return s
    .normalize('NFKC')
    .replace(SPACE_LIKE, ' ')
    .replace(INVISIBLE, '')
    .toLowerCase()
    .normalize('NFD')
    .replace(DIACRITIC, '')
    .normalize('NFC') // recompose what NFD split but we kept (Hangul syllables, kana voicing)
    .replace(HOMOGLYPH_RE, (ch) => HOMOGLYPHS[ch] ?? ch)
    .replace(/\s+/gu, ' ')
    .trim();
}

/**
 * The form word-list entries and comments are matched in: `normalizeText`, then
 * - punctuation inside a token is dropped, so 'bad-word', 's.p.a.m' and 'b_a_d'
 *   join up (a space still separates tokens, which short words need: see
 *   `wordMatcher`);
 * - runs of two or more one-character tokens are joined, so 's p a m' → 'spam'
 *   and '垃 圾' → '垃圾';
 * - leetspeak is undone in tokens that contain a letter ('sp4m', '$pam' → 'spam').
 * Tokens are separated by single spaces; CJK text, which has no spaces, stays one
 * token and is matched by substring.
 */
export function skeleton(s: string): string {
  const raw = normalizeText(s)
    .split(' ')
    .map((t) => t.replace(NOT_TOKEN_CHAR, ''))
    .filter((t) => t !== '');

  const joined: string[] = [];
  let run = '';
  let runLength = 0;
  const flush = (): void => {
    if (runLength > 0) joined.push(run);
    run = '';
    runLength = 0;
  };
  for (const t of raw) {
    if ([...t].length === 1) {
      run += t;
      runLength += 1;
    } else {
      flush();
      joined.push(t);
    }
  }
  flush();

  return joined
    .map((t) => (HAS_LETTER.test(t) ? t.replace(LEET_RE, (ch) => LEET[ch] ?? ch) : t.replace(/[@$]/g, '')))
    .filter((t) => t !== '')
    .join(' ');
}

/** Han, kana and Hangul: scripts written without spaces between words, so word-list entries in them match as substrings. */
export const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u;
