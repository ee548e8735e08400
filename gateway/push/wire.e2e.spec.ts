/**
 * Both wire formats on one gateway: a socket that offers the
 * danmaku.msgpack.v1 subprotocol gets binary MessagePack frames (snapshot,
 * batches, acks) and may write MessagePack frames; a JSON socket in the same
 * room gets the same messages as text; the SDK speaks both; bad MessagePack
 * gets coded nacks.
 */
import { pack, unpack } from 'msgpackr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startWorld, type World } from '../../services/world.ts';
import { randomName, waitFor } from '../../test/helpers.ts';
import { DanmakuClient } from '../client/client.ts';
import { SUBPROTOCOLS, type ServerMessage, type WriteReply } from '../protocol.ts';

let w: World;
const room = randomName('wire');

beforeAll(async () => {
  w = await startWorld({ partitions: 1, env: { MODERATION_ENABLED: 'false', LIMIT_COMMENTS: '1000' } });
});
afterAll(async () => {
  await w?.stop();
});

interface Conn {
  ws: WebSocket;
  msgs: (ServerMessage | WriteReply)[];
  binary: boolean[];
}

function open(protocols: string[] | undefined, user: string): Promise<Conn> {
  const url = `${w.url.replace(/^http/, 'ws')}/v1/rooms/${room}/ws?token=${w.token(user)}`;
  const ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
  const c: Conn = { ws, msgs: [], binary: [] };
  ws.on('message', (d: Buffer, isBinary: boolean) => {
    c.binary.push(isBinary);
    c.msgs.push((isBinary ? unpack(d) : JSON.parse(d.toString('utf8'))) as ServerMessage | WriteReply);
  });
  return waitFor(() => c.msgs.some((m) => m.type === 'snapshot') && c, { what: 'a snapshot' });
}

const comments = (c: Conn) =>
  c.msgs.flatMap((m): string[] => (m.type === 'batch' ? m.events.flatMap((e) => (e.t === 'comment' ? [e.entry.text] : [])) : m.type === 'snapshot' ? m.items.flatMap((i) => (i.kind === 'comment' ? [i.text] : [])) : []));

describe('wire formats', () => {
  it('negotiates MessagePack per socket; both sockets get the same messages; writes and acks in MessagePack', async () => {
    const mp = await open([SUBPROTOCOLS.msgpack, SUBPROTOCOLS.json], 'wire-mp');
    const js = await open(undefined, 'wire-json');
    expect(mp.ws.protocol).toBe(SUBPROTOCOLS.msgpack);
    expect(js.ws.protocol).toBe('');
    expect(mp.binary.every(Boolean)).toBe(true);
    expect(js.binary.some(Boolean)).toBe(false);

    mp.ws.send(pack({ type: 'comment', id: 'm1', text: 'packed hello', clientMsgId: 'wire-m1' }));
    const ack = await waitFor(() => mp.msgs.find((m) => m.type === 'ack' && m.id === 'm1'), { what: 'the MessagePack ack' });
    expect(ack).toMatchObject({ type: 'ack', eventId: expect.any(String), position: { offset: expect.any(Number) } });
    for (const c of [mp, js]) await waitFor(() => comments(c).includes('packed hello') || undefined, { what: 'the comment on both sockets' });
    const batchOf = (c: Conn) => c.msgs.find((m) => m.type === 'batch' && m.events.some((e) => e.t === 'comment' && e.entry.text === 'packed hello'));
    expect(batchOf(mp)).toEqual(batchOf(js));

    // Bad input on the binary path gets the same coded nacks as JSON's.
    mp.ws.send(Buffer.from([0xc1])); // never used in MessagePack
    mp.ws.send(pack({ type: 'comment', id: 'bad-utf8', text: 'x' }).subarray(0, 0)); // an empty frame
    mp.ws.send(Buffer.concat([Buffer.from('82a474797065a7636f6d6d656e74a474657874a2', 'hex'), Buffer.from([0xff, 0x41])])); // {type:'comment', text:<bad UTF-8>}
    await waitFor(() => mp.msgs.filter((m) => m.type === 'nack').length >= 3 || undefined, { what: 'three nacks' });
    const codes = mp.msgs.flatMap((m) => (m.type === 'nack' ? [m.code] : []));
    expect(codes).toEqual(['ERR_BAD_JSON', 'ERR_BAD_JSON', 'ERR_INVALID_UTF8']);
    // A JSON socket still refuses binary frames.
    js.ws.send(pack({ type: 'comment', id: 'j1', text: 'x' }));
    await waitFor(() => js.msgs.find((m) => m.type === 'nack' && m.code === 'ERR_VALIDATION'), { what: 'a nack for a binary frame on a JSON socket' });
    mp.ws.terminate();
    js.ws.terminate();
  });

  it('the SDK speaks MessagePack when asked, and posts over it', async () => {
    const client = new DanmakuClient({ baseUrl: w.url, room, WebSocket, token: w.token('wire-sdk'), wire: 'msgpack' });
    try {
      await client.ready;
      expect(client.mode.transport).toBe('ws');
      const r = await client.post('from the sdk, packed');
      expect(r.eventId).toEqual(expect.any(String));
      await waitFor(() => client.items.some((i) => i.text === 'from the sdk, packed') || undefined, { what: 'the SDK to see its comment' });
    } finally {
      client.close();
    }
  });
});
