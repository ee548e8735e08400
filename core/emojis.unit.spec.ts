import { describe, expect, it } from 'vitest';
import { emojiKey, loadConfig, parseEmojis } from './config.ts';

describe('GATEWAY_EMOJIS', () => {
  it('reads names with their emoji, bare names, flags and keycaps', () => {
    expect(parseEmojis('heart=❤️, fire=🔥 ,gg,jp=🇯🇵,one=1️⃣,family=👨‍👩‍👧')).toEqual([
      { name: 'heart', char: '❤️' },
      { name: 'fire', char: '🔥' },
      { name: 'gg', char: null },
      { name: 'jp', char: '🇯🇵' },
      { name: 'one', char: '1️⃣' },
      { name: 'family', char: '👨‍👩‍👧' },
    ]);
    expect(loadConfig({}).gateway.emojis.map((e) => e.name)).toEqual(['heart', 'fire', 'laugh', 'clap', 'wow', 'sad']);
  });

  it.each([
    ['an empty set', ' , '],
    ['a bad name', 'Heart=❤️'],
    ['a name twice', 'a=🔥,a=🎉'],
    ['an emoji twice (variation selectors aside)', 'a=❤️,b=❤'],
    ['two emoji for one name', 'a=🔥🔥'],
    ['a word for an emoji', 'a=fire'],
    ['an empty emoji', 'a='],
  ])('refuses %s', (_what, raw) => {
    expect(() => parseEmojis(raw)).toThrow();
  });

  it('ignores variation selectors when matching', () => {
    expect(emojiKey('❤️')).toBe(emojiKey('❤'));
  });
});
