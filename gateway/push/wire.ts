/**
 * The socket's wire format, negotiated per socket with a WebSocket
 * subprotocol: `danmaku.msgpack.v1` (MessagePack through msgpackr, binary
 * frames) or `danmaku.json.v1` (JSON text frames; also what a socket that
 * names no subprotocol gets, so older clients are unchanged). The messages
 * are the same objects either way (gateway/protocol.ts).
 *
 * A message shared by many sockets is a `Frame`: encoded at most once per
 * format, whatever number of sockets it is written to.
 */
import { Packr, Unpackr } from 'msgpackr';
import { SUBPROTOCOLS } from '../protocol.ts';

export type Wire = 'json' | 'msgpack';

export { SUBPROTOCOLS };

/** The server's pick among the subprotocols a client offers: MessagePack first (smaller, cheaper), else JSON, else none (JSON). */
export function chooseSubprotocol(offered: ReadonlySet<string>): string | false {
  if (offered.has(SUBPROTOCOLS.msgpack)) return SUBPROTOCOLS.msgpack;
  if (offered.has(SUBPROTOCOLS.json)) return SUBPROTOCOLS.json;
  return false;
}

export function wireOf(protocol: string | undefined): Wire {
  return protocol === SUBPROTOCOLS.msgpack ? 'msgpack' : 'json';
}

// Plain MessagePack maps and arrays (no msgpackr records or extensions), so
// any MessagePack decoder in any language reads the frames.
const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

export function encode(msg: unknown, wire: Wire): Buffer {
  return wire === 'msgpack' ? packr.pack(msg) : Buffer.from(JSON.stringify(msg));
}

/** Decodes a client's binary MessagePack frame; throws on bytes that are not one MessagePack value. */
export function decodeMsgpack(data: Buffer): unknown {
  return unpackr.unpack(data);
}

/** One message, encoded lazily and at most once per format. */
export class Frame {
  private json: Buffer | undefined;
  private msgpack: Buffer | undefined;
  constructor(readonly msg: unknown) {}

  /** A frame whose JSON bytes already exist (serialized by hand on a hot path). */
  static ofJson(text: string): Frame {
    const f = new Frame(undefined);
    f.json = Buffer.from(text);
    return f;
  }

  bytes(wire: Wire): Buffer {
    if (wire === 'json') return (this.json ??= Buffer.from(JSON.stringify(this.msg)));
    return (this.msgpack ??= packr.pack(this.msg === undefined ? JSON.parse(this.json!.toString('utf8')) : this.msg));
  }
}
