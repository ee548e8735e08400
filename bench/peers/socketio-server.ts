/**
 * The Socket.IO 4 peer of the fanout bench: a minimal broadcast server with
 * the Redis adapter (so a second node would get the same broadcasts), the way
 * a chat room is usually built on Socket.IO.
 *
 *   clients:  io(url, { transports: ['websocket'], query: { room } })  → joined to `room`
 *   writer:   POST /publish {room, text}  → io.to(room).emit('comment', {eventId, text, occurredAt})
 *
 * Args: --port N  --redis URL  --prefix KEY_PREFIX (the adapter's channel prefix)
 * Prints `listening on <url>` when ready; stops on SIGTERM.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';

const { values } = parseArgs({ options: { port: { type: 'string' }, redis: { type: 'string' }, prefix: { type: 'string' } } });
const port = Number(values.port ?? 0);
const pub = new Redis(values.redis ?? 'redis://127.0.0.1:6379', { lazyConnect: false });
const sub = pub.duplicate();

const server = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/publish') {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { room?: string; text?: string };
        if (!body.room || typeof body.text !== 'string') throw new Error('room and text are required');
        const msg = { eventId: randomUUID(), text: body.text, occurredAt: Date.now() };
        io.to(body.room).emit('comment', msg);
        res.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ eventId: msg.eventId }));
      } catch (err) {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: (err as Error).message }));
      }
    });
    return;
  }
  if (req.url === '/healthz') {
    res.writeHead(200).end('ok');
    return;
  }
  res.writeHead(404).end();
});

const io = new Server(server, {
  transports: ['websocket'],
  serveClient: false,
  adapter: createAdapter(pub, sub, { key: values.prefix ?? 'bench-sio' }),
});
io.on('connection', (socket) => {
  const room = socket.handshake.query.room;
  if (typeof room === 'string' && room) void socket.join(room);
  socket.emit('joined', { room });
});

server.listen(port, '127.0.0.1', () => {
  const a = server.address();
  console.log(`[socketio] listening on http://127.0.0.1:${typeof a === 'object' && a ? a.port : port}`);
});

process.once('SIGTERM', () => {
  io.close();
  server.close();
  pub.disconnect();
  sub.disconnect();
  process.exit(0);
});
