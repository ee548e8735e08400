/**
 * Comment text as the gateway accepts it: NFC; no control, zero-width, bidi
 * or stray tag characters; 1–200 code points; and something a viewer can see.
 */
export const MAX_TEXT_CODE_POINTS = 200;

// Control characters (keeping none: danmaku is one line), zero-width and
// invisible formatting characters that would let a comment look empty or
// dodge the word list, and the bidi controls (ALM U+061C, LRM/RLM, the
// embeddings and overrides U+202A–202E, the isolates U+2066–2069): they
// reorder the text around them, the comment's own ("Trojan Source") and,
// left unterminated, whatever a client draws next to it. The zero-width
// joiner is handled apart (JOINER), emoji sequences need it.
const STRIP = /[\p{Cc}\u00AD\u061C\u200B\u200C\u200E\u200F\u2028-\u202E\u2060-\u206F\uFEFF]/gu;

// A zero-width joiner is kept only inside an emoji ZWJ sequence (👨‍👩‍👧,
// 🏳️‍🌈, 👩🏽‍💻): after an emoji, its skin tone or VS16, before an emoji.
// Anywhere else it only hides things (a word split for the word list).
const JOINER = /(?<![\p{Extended_Pictographic}\p{Emoji_Modifier}\uFE0F])\u200D|\u200D(?!\p{Extended_Pictographic})/gu;

// Tag characters (U+E0000–E007F) are invisible; their one displayed use is an
// emoji tag sequence: 🏴 U+1F3F4, a subdivision code in tag letters and digits
// (a region, two letters or three digits, then 1–4 more; "gbeng" for England),
// then CANCEL TAG U+E007F. Those flags survive whole; every other tag goes.
const TAGS = /(\u{1F3F4}(?:[\u{E0061}-\u{E007A}]{2}|[\u{E0030}-\u{E0039}]{3})[\u{E0030}-\u{E0039}\u{E0061}-\u{E007A}]{1,4}\u{E007F})|[\u{E0000}-\u{E007F}]/gu;

// A variation selector picks one glyph for the character before it: one is
// all a character takes. Runs of them carry nothing visible, only hidden data
// (one selector per byte is a known way to smuggle text inside an emoji).
const VS = '\\uFE00-\\uFE0F\\u{E0100}-\\u{E01EF}';
const VS_RUN = new RegExp(`([${VS}])[${VS}]+`, 'gu');

export function normalizeComment(raw: string): string {
  return raw
    .replace(TAGS, (_m, flag: string | undefined) => flag ?? '')
    .replace(STRIP, '')
    .replace(JOINER, '')
    .replace(VS_RUN, '$1')
    // NFC after stripping: a removed character may have separated a base from its combining mark.
    .normalize('NFC')
    .replace(/\s+/gu, ' ')
    .trim();
}

export const codePoints = (s: string) => [...s].length;

// What renders as nothing on its own: whitespace, combining marks (variation
// selectors among them), format characters (tags, joiners), the other
// default-ignorables (Hangul fillers U+115F, U+1160, U+3164, U+FFA0, the
// Mongolian and Khmer ones) and the blank braille pattern U+2800.
const INVISIBLE = /^[\s\p{M}\p{Cf}\p{Default_Ignorable_Code_Point}\u2800]*$/u;

/** A normalised comment that would show nothing (and is not empty: that is a length error). */
export function isInvisible(text: string): boolean {
  return INVISIBLE.test(text);
}

/** Emote-only rooms accept emoji (flags and keycaps included) and :emote: codes, and nothing else. */
export function isEmoteOnly(text: string): boolean {
  return /^(?:\s|:[a-z0-9_+-]+:|\p{Extended_Pictographic}|\p{Emoji_Modifier}|\p{Regional_Indicator}|[#*0-9]\uFE0F?\u20E3|[\u{E0020}-\u{E007F}]|\u200D|\uFE0F)+$/u.test(text);
}
