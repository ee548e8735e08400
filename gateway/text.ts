/** Comment text as the gateway accepts it: NFC, no control or zero-width characters, 1–200 code points. */
export const MAX_TEXT_CODE_POINTS = 200;

// Control characters (keeping none: danmaku is one line), zero-width and
// invisible formatting characters that would let a comment look empty or
// dodge the word list.
const STRIP = /[\p{Cc}\u200B-\u200F\u2028-\u202E\u2060-\u2064\u206A-\u206F\uFEFF\u00AD]/gu;

export function normalizeComment(raw: string): string {
  return raw.normalize('NFC').replace(STRIP, '').replace(/\s+/gu, ' ').trim();
}

export const codePoints = (s: string) => [...s].length;

/** Emote-only rooms accept emoji and :emote: codes, and nothing else. */
export function isEmoteOnly(text: string): boolean {
  return /^(?:\s|:[a-z0-9_+-]+:|\p{Extended_Pictographic}|\p{Emoji_Modifier}|\u200D|\uFE0F)+$/u.test(text);
}
