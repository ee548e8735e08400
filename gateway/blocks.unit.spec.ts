/** Bans and revocations: which tokens are refused, decided without Redis. */
import { describe, expect, it } from 'vitest';
import { judgeBlock, parseBan, type Ban } from './blocks.ts';

const now = 1_700_000_000_000;
const ban = (untilMs: number | null): Ban => ({ untilMs, reason: 'spam', by: 'ada', atMs: now - 1000 });

describe('blocks', () => {
  it('refuses a banned user until the ban ends, with its end and reason', () => {
    const e = judgeBlock(ban(now + 1), undefined, now / 1000, now);
    expect(e?.code).toBe('ERR_BANNED');
    expect(e?.status).toBe(403);
    expect(e?.details).toEqual({ untilMs: now + 1, reason: 'spam' });
    expect(judgeBlock(ban(null), undefined, now / 1000, now)?.details).toEqual({ untilMs: null, reason: 'spam' });
    expect(judgeBlock(ban(now), undefined, now / 1000, now)).toBeNull();
  });

  it('refuses tokens issued before a revocation, and tokens without iat; accepts later ones', () => {
    const revokedAt = now - 500; // mid-second
    const sec = Math.floor(revokedAt / 1000);
    expect(judgeBlock(undefined, revokedAt, sec - 1, now)?.code).toBe('ERR_TOKEN_REVOKED');
    expect(judgeBlock(undefined, revokedAt, undefined, now)?.code).toBe('ERR_TOKEN_REVOKED');
    // Same second as the revocation: iat cannot tell before from after, so it is refused.
    expect(judgeBlock(undefined, revokedAt, sec, now)?.code).toBe('ERR_TOKEN_REVOKED');
    expect(judgeBlock(undefined, revokedAt, sec + 1, now)).toBeNull();
    // A revocation on a whole second: a token of that second was issued at or after it.
    expect(judgeBlock(undefined, sec * 1000, sec, now)).toBeNull();
    expect(judgeBlock(undefined, undefined, undefined, now)).toBeNull();
  });

  it('says banned first when both apply', () => {
    expect(judgeBlock(ban(null), now, 0, now)?.code).toBe('ERR_BANNED');
  });

  it('reads a stored ban, and ignores garbage', () => {
    expect(parseBan(JSON.stringify(ban(null)))).toEqual(ban(null));
    expect(parseBan('{')).toBeUndefined();
    expect(parseBan(JSON.stringify({ untilMs: 'soon' }))).toBeUndefined();
    expect(parseBan(null)).toBeUndefined();
  });
});
