/**
 * Comment text as it is displayed: what the normaliser removes (controls,
 * zero-width, bidi, stray tags), what it keeps whole (emoji with variation
 * selectors, skin tones, ZWJ sequences, subdivision flags), and which
 * comments would show nothing at all.
 */
import { describe, expect, it } from 'vitest';
import { codePoints, isEmoteOnly, isInvisible, normalizeComment } from './text.ts';

const ENGLAND = '\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}';
const SCOTLAND = '\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}';
const WALES = '\u{1F3F4}\u{E0067}\u{E0062}\u{E0077}\u{E006C}\u{E0073}\u{E007F}';
const hex = (s: string) => [...s].map((c) => c.codePointAt(0)!.toString(16).toUpperCase());

describe('normalizeComment: what it always did', () => {
  it('composes to NFC, removes controls and zero-width characters, collapses whitespace', () => {
    expect(normalizeComment('Cafe\u0301')).toBe('Café');
    expect(normalizeComment('  a  b \u3000 c\u00A0 ')).toBe('a b c');
    // Tabs and newlines are control characters: removed, not turned into spaces (danmaku is one line).
    expect(normalizeComment('a\tb\nc')).toBe('abc');
    expect(normalizeComment('a\u0007b\u0000c\u007F')).toBe('abc');
    expect(normalizeComment('sp\u200Bam s\u00ADpam \uFEFFx\u2060y\u200Cz')).toBe('spam spam xyz');
    expect(normalizeComment('\u200b\u200b \u0007')).toBe('');
    expect(normalizeComment('line\u2028break\u2029para')).toBe('linebreakpara');
  });

  it('composes after removing, so a base and its mark meet again', () => {
    expect(normalizeComment('e\u200B\u0301')).toBe('é');
  });
});

describe('bidi controls', () => {
  it('strips every control that reorders the text around it', () => {
    const controls = ['\u061C', '\u200E', '\u200F', '\u202A', '\u202B', '\u202C', '\u202D', '\u202E', '\u2066', '\u2067', '\u2068', '\u2069'];
    for (const c of controls) expect(normalizeComment(`a${c}b`), hex(c).join()).toBe('ab');
    // "Trojan Source": an override left open would flip whatever a client draws after the comment.
    expect(normalizeComment('user \u202Egnp.exe')).toBe('user gnp.exe');
    expect(normalizeComment('\u2067\u2066abc\u2069\u2069')).toBe('abc');
  });

  it('leaves right-to-left text itself alone', () => {
    expect(normalizeComment('שלום עולם')).toBe('שלום עולם');
    expect(normalizeComment('مرحبا بالعالم')).toBe('مرحبا بالعالم');
  });
});

describe('tag characters', () => {
  it('strips tags outside an emoji tag sequence', () => {
    expect(normalizeComment('hi\u{E0001}\u{E0068}\u{E0069}\u{E007F} there')).toBe('hi there');
    // ASCII smuggled as invisible tags after visible text.
    expect(normalizeComment(`ok${[...'ignore all rules'].map((c) => String.fromCodePoint(0xe0000 + c.codePointAt(0)!)).join('')}`)).toBe('ok');
  });

  it('keeps the subdivision flags whole', () => {
    for (const flag of [ENGLAND, SCOTLAND, WALES]) {
      expect(normalizeComment(`go ${flag}!`)).toBe(`go ${flag}!`);
      expect(hex(normalizeComment(flag))).toEqual(hex(flag));
    }
    expect(normalizeComment(`${ENGLAND}${SCOTLAND}${WALES}`)).toBe(`${ENGLAND}${SCOTLAND}${WALES}`);
  });

  it('strips tags that do not make a flag: no cancel tag, no black flag, or junk after the flag', () => {
    expect(normalizeComment('\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}')).toBe('\u{1F3F4}');
    expect(normalizeComment('\u{1F600}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}')).toBe('\u{1F600}');
    expect(normalizeComment(`${ENGLAND}\u{E0041}\u{E007F}`)).toBe(ENGLAND);
    // Capital tag letters and spaces are not in a subdivision code.
    expect(normalizeComment('\u{1F3F4}\u{E0047}\u{E0042}\u{E0045}\u{E004E}\u{E0047}\u{E007F}')).toBe('\u{1F3F4}');
  });
});

describe('emoji stay whole', () => {
  it.each([
    ['heart with VS16', '❤️'],
    ['thumbs up, skin tone', '👍🏽'],
    ['family (ZWJ)', '👨‍👩‍👧'],
    ['rainbow flag (VS16 + ZWJ)', '🏳️‍🌈'],
    ['technologist, skin tone (ZWJ)', '👩🏽‍💻'],
    ['heart on fire', '❤️‍🔥'],
    ['polar bear', '🐻‍❄️'],
    ['country flag', '🇯🇵'],
    ['keycap', '#️⃣'],
  ])('%s', (_name, emoji) => {
    expect(hex(normalizeComment(emoji))).toEqual(hex(emoji));
    expect(hex(normalizeComment(`nice ${emoji} shot`))).toEqual(hex(`nice ${emoji} shot`));
    expect(isInvisible(normalizeComment(emoji))).toBe(false);
  });

  it('drops a zero-width joiner that joins no emoji (a word split for the word list)', () => {
    expect(normalizeComment('sp\u200Dam')).toBe('spam');
    expect(normalizeComment('\u200D👍')).toBe('👍');
    expect(normalizeComment('👍\u200D')).toBe('👍');
  });

  it('keeps one variation selector per character: a run only carries hidden data', () => {
    expect(normalizeComment('❤\uFE0F\uFE0F\uFE0E')).toBe('❤\uFE0F');
    const smuggled = `😀${'\u{E0100}\u{E0131}\uFE01\u{E0150}'.repeat(8)}`;
    expect(normalizeComment(smuggled)).toBe('😀\u{E0100}');
    // An ideographic variation sequence (one selector) is left as it is.
    expect(normalizeComment('葛\u{E0100}')).toBe('葛\u{E0100}');
  });
});

describe('isInvisible', () => {
  it.each([
    ['variation selectors', '\uFE0F\uFE0F'],
    ['a supplementary variation selector', '\u{E0100}'],
    ['combining marks', '\u0301\u0308\u0323'],
    ['Hangul fillers', '\u3164 \u3164'],
    ['a halfwidth Hangul filler', '\uFFA0'],
    ['Hangul choseong and jungseong fillers', '\u115F\u1160'],
    ['blank braille', '\u2800\u2800'],
    ['a combining grapheme joiner', '\u034F'],
    ['Mongolian vowel separator and free variation selectors', '\u180E\u180B'],
    ['Khmer inherent vowels', '\u17B4\u17B5'],
    ['an interlinear annotation anchor', '\uFFF9'],
    ['musical format characters', '\u{1D173}\u{1D174}'],
  ])('refuses %s', (_name, raw) => {
    const text = normalizeComment(raw);
    expect(codePoints(text)).toBeGreaterThan(0);
    expect(isInvisible(text)).toBe(true);
  });

  it.each(['hi', 'a\u0301', '字', '❤️', '👍🏽', '👨‍👩‍👧', ENGLAND, '🇯🇵', '.', '\u3164x', '\u{E000}'])('accepts %s', (raw) => {
    expect(isInvisible(normalizeComment(raw))).toBe(false);
  });
});

describe('isEmoteOnly', () => {
  it('accepts emoji of every shape and :emote: codes', () => {
    for (const t of ['👍🏽', '❤️', '👨‍👩‍👧', ENGLAND, '🇯🇵 🇫🇷', '#️⃣', ':pog: :kappa:', '🔥 :hype:']) expect(isEmoteOnly(normalizeComment(t)), t).toBe(true);
  });
  it('refuses text', () => {
    for (const t of ['hi 👍', 'lol', '#1', ':not an emote']) expect(isEmoteOnly(normalizeComment(t)), t).toBe(false);
  });
});
