/**
 * A raw WebSocket client of a room for tests of the socket write protocol
 * (gateway/protocol.ts `WriteFrame` → `AckMessage | NackMessage`): it
 * records every message, and answers each frame it sends with the ack or
 * nack carrying the frame's id. No SDK in between, so the tests see the wire.
 */
import WebSocket from 'ws';
import type { AckMessage, NackMessage, ServerMessage, WriteReply } from '../gateway/protocol.ts';

export interface WsWriter {
  ws: WebSocket;
  messages: (ServerMessage | WriteReply)[];
  replies: WriteReply[];
  /** Close code and reason once closed. */
  closed: { code: number; reason: string } | undefined;
  /**
   * Sends a frame (with a fresh `id` unless it has one) and resolves its
   * answer; a socket that closes first answers with a synthetic nack, code
   * SOCKET_CLOSED (never sent by the gateway).
   */
  send(frame: Record<string, unknown>): Promise<AckMessage | NackMessage>;
  /** Sends raw text (or a binary frame) and resolves the next answer with `id` (null: unreadable frames). */
  sendRaw(data: string | Buffer, id: string | null, binary?: boolean): Promise<AckMessage | NackMessage>;
  /** Resolves once the socket has its snapshot (it is registered and its token checked); rejects if it closes first. */
  ready: Promise<void>;
  close(): void;
}

let seq = 0;
const NULL_ID = '\u0000null';

export function wsWriter(baseUrl: string, room: string, token?: string): WsWriter {
  const q = token ? `?token=${encodeURIComponent(token)}` : '';
  const ws = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}/v1/rooms/${room}/ws${q}`);
  const messages: (ServerMessage | WriteReply)[] = [];
  const replies: WriteReply[] = [];
  const waiters = new Map<string, ((m: AckMessage | NackMessage) => void)[]>();
  let snapshot!: () => void;
  let failed!: (e: Error) => void;
  const ready = new Promise<void>((resolve, reject) => {
    snapshot = resolve;
    failed = reject;
  });
  ready.catch(() => undefined);
  const timer = setTimeout(() => failed(new Error('no snapshot within 20 s')), 20_000);
  timer.unref();

  const w: WsWriter = {
    ws,
    messages,
    replies,
    closed: undefined,
    ready,
    send(frame) {
      const id = typeof frame.id === 'string' ? frame.id : `f${++seq}`;
      return w.sendRaw(JSON.stringify({ ...frame, id }), id);
    },
    sendRaw(data, id, binary = false) {
      const key = id ?? NULL_ID;
      const p = new Promise<AckMessage | NackMessage>((resolve) => {
        if (w.closed) return resolve({ type: 'nack', id, code: 'SOCKET_CLOSED', message: `closed with ${w.closed.code}` });
        const list = waiters.get(key) ?? [];
        list.push(resolve);
        waiters.set(key, list);
      });
      if (!w.closed) ws.send(data, { binary });
      return p;
    },
    close() {
      ws.close();
    },
  };
  ws.on('message', (data) => {
    const m = JSON.parse(String(data)) as ServerMessage | WriteReply;
    messages.push(m);
    if (m.type === 'snapshot') {
      clearTimeout(timer);
      snapshot();
    }
    if (m.type === 'ack' || m.type === 'nack') {
      replies.push(m);
      const key = m.id ?? NULL_ID;
      const list = waiters.get(key);
      const next = list?.shift();
      if (list && list.length === 0) waiters.delete(key);
      next?.(m);
    }
  });
  ws.on('close', (code, reason) => {
    w.closed = { code, reason: reason.toString() };
    clearTimeout(timer);
    failed(new Error(`socket closed ${code} ${reason.toString()} before its snapshot`));
    for (const [key, list] of waiters) for (const resolve of list) resolve({ type: 'nack', id: key === NULL_ID ? null : key, code: 'SOCKET_CLOSED', message: `closed with ${code}` });
    waiters.clear();
  });
  ws.on('error', () => undefined);
  return w;
}
