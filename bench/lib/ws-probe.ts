/**
 * Does the gateway take writes over its WebSocket? The protocol (being
 * added to the gateway): a text frame `{"type":"comment"|"reaction","id",…}`
 * is answered by `{"type":"ack","id",…}` or `{"type":"nack","id","code",…}`.
 * A gateway without it ignores the frame (or closes the socket): no answer
 * within the timeout means "not supported", and the scenarios fall back to
 * HTTP and say so.
 */
import WebSocket from 'ws';

export interface WsProbe {
  supported: boolean;
  /** What happened, for the report. */
  detail: string;
  /** The answer frame, when there was one. */
  answer?: { type: 'ack' | 'nack'; code?: string; eventId?: string };
  ms?: number;
}

export async function probeWsWrites(o: { url: string; room: string; token: string; frame: Record<string, unknown>; timeoutMs?: number }): Promise<WsProbe> {
  const timeoutMs = o.timeoutMs ?? 5000;
  const id = `probe-${Date.now().toString(36)}`;
  const ws = new WebSocket(`${o.url.replace(/^http/, 'ws')}/v1/rooms/${encodeURIComponent(o.room)}/ws?token=${o.token}`, { perMessageDeflate: false, handshakeTimeout: 15_000 });
  try {
    return await new Promise<WsProbe>((resolve) => {
      let sentAt = 0;
      let timer: NodeJS.Timeout | undefined;
      const done = (r: WsProbe) => {
        if (timer) clearTimeout(timer);
        resolve(r);
      };
      ws.on('message', (data: Buffer) => {
        if (sentAt === 0) {
          // The first frame is the snapshot: now in the room, write.
          sentAt = performance.now();
          ws.send(JSON.stringify({ ...o.frame, id }));
          timer = setTimeout(() => done({ supported: false, detail: `no ack or nack to a ${String(o.frame.type)} frame within ${timeoutMs} ms: the gateway does not take WebSocket writes` }), timeoutMs);
          return;
        }
        let m: { type?: string; id?: string; code?: string; eventId?: string; message?: string };
        try {
          m = JSON.parse(data.toString('utf8')) as typeof m;
        } catch {
          return;
        }
        if ((m.type === 'ack' || m.type === 'nack') && m.id === id) {
          const ms = Math.round(performance.now() - sentAt);
          done({ supported: true, detail: m.type === 'ack' ? `ack in ${ms} ms` : `nack ${m.code}: ${m.message ?? ''}`, answer: { type: m.type, code: m.code, eventId: m.eventId }, ms });
        }
      });
      ws.on('close', (code: number, reason: Buffer) => done({ supported: false, detail: `the socket closed (${code} ${reason.toString('utf8')}) ${sentAt ? 'after a write frame' : 'before the snapshot'}: no WebSocket writes` }));
      ws.on('error', (err: Error) => done({ supported: false, detail: `socket error: ${err.message}` }));
    });
  } finally {
    ws.terminate();
  }
}
