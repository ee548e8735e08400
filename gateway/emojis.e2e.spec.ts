/**
 * The reaction set is the deployment's (GATEWAY_EMOJIS), and a reaction may be
 * sent by name or as the emoji itself, over HTTP and the socket alike; the
 * events and the tallies carry the name.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type World } from '../services/world.ts';
import { randomName, waitFor } from '../test/helpers.ts';
import { wsWriter } from '../test/ws-writer.ts';

let w: World;
beforeAll(async () => {
  w = await startWorld({ env: { MODERATION_ENABLED: 'false', GATEWAY_EMOJIS: 'party=🎉,heart=❤️,gg,ja=🇯🇵', REACTIONS_FLUSH_MS: '100' } });
});
afterAll(async () => {
  await w?.stop();
});

async function react(room: string, emoji: string) {
  const res = await fetch(`${w.url}/v1/rooms/${room}/reactions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${w.token('fan')}` }, body: JSON.stringify({ emoji }) });
  return { status: res.status, body: (await res.json()) as { code?: string; message?: string } };
}

describe('the reaction set of a deployment', () => {
  it('lists its emoji at GET /v1/emojis', async () => {
    const res = await fetch(`${w.url}/v1/emojis`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ emojis: [{ name: 'party', char: '🎉' }, { name: 'heart', char: '❤️' }, { name: 'gg', char: null }, { name: 'ja', char: '🇯🇵' }] });
  });

  it('takes a name or the emoji itself (with or without its variation selector) and tallies by name; refuses what is not in the set', async () => {
    const room = randomName('emoji');
    for (const e of ['party', '🎉', '❤️', '❤', 'heart', 'gg', '🇯🇵']) expect((await react(room, e)).status, e).toBe(202);
    for (const e of ['fire', '🔥', 'Party', '🎉🎉', '🇯']) {
      const r = await react(room, e);
      expect([r.status, r.body.code], e).toEqual([400, 'ERR_UNKNOWN_EMOJI']);
      expect(r.body.message).toContain('party (🎉)');
    }
    // Over the socket too.
    const s = wsWriter(w.url, room, w.token('socket-fan'));
    try {
      await s.ready;
      expect((await s.send({ type: 'reaction', emoji: '🎉' })).type).toBe('ack');
      expect(await s.send({ type: 'reaction', emoji: '🔥' })).toMatchObject({ type: 'nack', code: 'ERR_UNKNOWN_EMOJI' });
    } finally {
      s.close();
    }
    const totals = await waitFor(async () => {
      const st = (await (await fetch(`${w.url}/v1/rooms/${room}/state`)).json()) as { tallies: { totals: Record<string, number> } };
      const t = st.tallies.totals;
      return t.party === 3 && t.heart === 3 ? t : undefined;
    }, { what: 'the tallies by name' });
    expect(totals).toEqual({ party: 3, heart: 3, gg: 1, ja: 1 });
  });
});
