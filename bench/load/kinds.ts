/**
 * The systems under test, as a load generator sees them: how a viewer
 * connects and reads comment texts, and how a writer publishes one.
 *
 *   ours        GET /v1/rooms/:room/ws (snapshot, then batch messages); POST /v1/rooms/:room/comments with a Bearer JWT
 *   socketio    socket.io-client, websocket transport, joined by `?room=`; POST /publish on the peer server
 *   centrifugo  its bidirectional JSON protocol over /connection/websocket (connect, subscribe); POST /api/publish with X-API-Key
 */
import http from 'node:http';
import { io as ioClient } from 'socket.io-client';
import WebSocket from 'ws';

export type Kind = 'ours' | 'socketio' | 'centrifugo';
export const KINDS: readonly Kind[] = ['ours', 'socketio', 'centrifugo'];

export interface Viewer {
  close(): void;
}

export interface ViewerHandlers {
  onText(text: string): void;
  /** The viewer is connected and subscribed (ours: the snapshot arrived). */
  onReady(): void;
  onClose(reason: string): void;
}

export interface ViewerOptions {
  kind: Kind;
  /** http://127.0.0.1:port of the server. */
  url: string;
  room: string;
  localAddress?: string;
}

const wsUrl = (url: string) => url.replace(/^http/, 'ws');

export function connectViewer(o: ViewerOptions, h: ViewerHandlers): Viewer {
  switch (o.kind) {
    case 'ours': {
      const ws = new WebSocket(`${wsUrl(o.url)}/v1/rooms/${encodeURIComponent(o.room)}/ws`, { perMessageDeflate: false, localAddress: o.localAddress });
      ws.on('message', (data: Buffer) => {
        const msg = JSON.parse(data.toString('utf8')) as { type: string; events?: { t: string; entry?: { text: string } }[] };
        if (msg.type === 'snapshot') h.onReady();
        else if (msg.type === 'batch') for (const e of msg.events ?? []) if (e.t === 'comment' && e.entry) h.onText(e.entry.text);
      });
      ws.on('close', (code: number) => h.onClose(`close ${code}`));
      ws.on('error', (err: Error) => h.onClose(`error ${err.message}`));
      return { close: () => ws.terminate() };
    }
    case 'socketio': {
      const s = ioClient(o.url, { transports: ['websocket'], query: { room: o.room }, reconnection: false, forceNew: true, timeout: 20_000, localAddress: o.localAddress } as Parameters<typeof ioClient>[1]);
      s.on('joined', () => h.onReady());
      s.on('comment', (m: { text: string }) => h.onText(m.text));
      s.on('disconnect', (reason: string) => h.onClose(`disconnect ${reason}`));
      s.on('connect_error', (err: Error) => h.onClose(`connect_error ${err.message}`));
      return { close: () => s.close() };
    }
    case 'centrifugo': {
      const ws = new WebSocket(`${wsUrl(o.url)}/connection/websocket`, { perMessageDeflate: false, localAddress: o.localAddress });
      ws.on('open', () => ws.send(JSON.stringify({ id: 1, connect: {} })));
      ws.on('message', (data: Buffer) => {
        // One frame may carry several replies, newline-delimited.
        for (const line of data.toString('utf8').split('\n')) {
          if (!line) continue;
          const r = JSON.parse(line) as { id?: number; error?: { code: number; message: string }; connect?: unknown; subscribe?: unknown; push?: { pub?: { data?: { text?: string } } } };
          if (r.error) h.onClose(`error ${r.error.code} ${r.error.message}`);
          else if (r.id === 1 && r.connect) ws.send(JSON.stringify({ id: 2, subscribe: { channel: o.room } }));
          else if (r.id === 2) h.onReady();
          else if (r.push?.pub?.data?.text !== undefined) h.onText(r.push.pub.data.text);
          else if (r.id === undefined && !r.push) ws.send('{}'); // server ping → pong
        }
      });
      ws.on('close', (code: number) => h.onClose(`close ${code}`));
      ws.on('error', (err: Error) => h.onClose(`error ${err.message}`));
      return { close: () => ws.terminate() };
    }
  }
}

export interface WriterTarget {
  kind: Kind;
  url: string;
  /** ours: bearer tokens, used round-robin (one per bench user). */
  tokens?: string[];
  /** centrifugo: the HTTP API key. */
  apiKey?: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** Posts one comment; resolves with the HTTP status (0 = network error). */
export function publish(t: WriterTarget, room: string, text: string, i: number): Promise<{ status: number; body: string }> {
  const u = new URL(t.url);
  let path: string;
  let body: string;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  switch (t.kind) {
    case 'ours':
      path = `/v1/rooms/${encodeURIComponent(room)}/comments`;
      body = JSON.stringify({ text });
      headers.authorization = `Bearer ${t.tokens![i % t.tokens!.length]}`;
      break;
    case 'socketio':
      path = '/publish';
      body = JSON.stringify({ room, text });
      break;
    case 'centrifugo':
      path = '/api/publish';
      body = JSON.stringify({ channel: room, data: { text } });
      headers['x-api-key'] = t.apiKey ?? '';
      break;
  }
  headers['content-length'] = String(Buffer.byteLength(body));
  return new Promise((resolve) => {
    const req = http.request({ host: u.hostname, port: u.port, path, method: 'POST', headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', () => resolve({ status: 0, body: 'response error' }));
    });
    req.setTimeout(30_000, () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ status: 0, body: err.message }));
    req.end(body);
  });
}

export function isAccepted(kind: Kind, r: { status: number; body: string }): boolean {
  if (kind === 'centrifugo') return r.status === 200 && !r.body.includes('"error"');
  return r.status === 202;
}
