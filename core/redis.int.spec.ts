/**
 * openRedis against a single redis-server and against the local three-node
 * Redis Cluster (the global setup starts both): a room's keys share a hash
 * tag, so one Lua script can touch them all, and notifications use sharded
 * pub/sub (SPUBLISH/SSUBSCRIBE).
 */
import { Cluster } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { randomName, testConfig, waitFor } from '../test/helpers.ts';
import { openRedis, redisOptions, roomTag, type RedisClient } from './redis.ts';

const modes = ['single', 'cluster'] as const;

describe.each(modes)('openRedis (%s)', (mode) => {
  const cfg = testConfig({ REDIS_MODE: mode });
  const opened: RedisClient[] = [];
  const open = (name: string) => {
    const c = openRedis({ ...redisOptions(cfg), name });
    opened.push(c);
    return c;
  };
  afterAll(async () => {
    await Promise.all(opened.map((c) => c.quit().catch(() => c.disconnect())));
  });

  it('runs one Lua script over two keys of a room (same hash tag)', async () => {
    const r = open('redis-spec-lua');
    const tag = roomTag(randomName('room-x'));
    const effect = `${cfg.redis.keyPrefix}${tag}:count`;
    const fence = `${cfg.redis.keyPrefix}${tag}:fence`;
    // Apply the effect only past the fence, and move the fence: both in one step.
    const script = `
      local fence = tonumber(redis.call('GET', KEYS[2]) or '-1')
      local offset = tonumber(ARGV[1])
      if offset <= fence then return -1 end
      redis.call('SET', KEYS[2], offset)
      return redis.call('INCRBY', KEYS[1], ARGV[2])`;
    expect(await r.eval(script, 2, effect, fence, 5, 3)).toBe(3);
    expect(await r.eval(script, 2, effect, fence, 6, 4)).toBe(7);
    expect(await r.eval(script, 2, effect, fence, 6, 4)).toBe(-1); // a replay past the fence is a no-op
    expect(await r.get(effect)).toBe('7');
    expect(await r.get(fence)).toBe('6');
    await r.del(effect, fence);
  });

  it('delivers a sharded pub/sub message (SPUBLISH to SSUBSCRIBE)', async () => {
    const sub = open('redis-spec-sub');
    const pub = open('redis-spec-pub');
    const channel = `${cfg.redis.keyPrefix}${roomTag(randomName('room-x'))}:notify`;
    const got: string[] = [];
    sub.on('smessage', (ch: string, msg: string) => {
      if (ch === channel) got.push(msg);
    });
    await sub.ssubscribe(channel);
    const message = randomName('hello');
    // SSUBSCRIBE has answered, so the shard that owns the channel counts one receiver.
    expect(await pub.spublish(channel, message)).toBe(1);
    await waitFor(() => got.includes(message), { what: `the message on ${channel}` });
    expect(got).toEqual([message]);
    await sub.sunsubscribe(channel);
  });

  if (mode === 'cluster') {
    it('is a real cluster: rooms land in different slots, and one script cannot span two rooms', async () => {
      const r = open('redis-spec-slots');
      expect(r).toBeInstanceOf(Cluster);
      const slots = new Set<number>();
      for (let i = 0; i < 20; i++) {
        const key = `${cfg.redis.keyPrefix}${roomTag(randomName('room'))}:count`;
        slots.add((await r.call('CLUSTER', 'KEYSLOT', key)) as number);
      }
      expect(slots.size).toBeGreaterThan(1);
      const info = (await r.call('CLUSTER', 'INFO')) as string;
      expect(info).toMatch(/cluster_state:ok/);
      expect(info).toMatch(/cluster_known_nodes:3/);
      const [a, b] = [roomTag(randomName('room-a')), roomTag(randomName('room-b'))];
      if ((await r.call('CLUSTER', 'KEYSLOT', a)) !== (await r.call('CLUSTER', 'KEYSLOT', b))) {
        await expect(r.eval("return redis.call('GET', KEYS[2])", 2, `${a}:k`, `${b}:k`)).rejects.toThrow(/CROSSSLOT|same slot/); // ioredis refuses it before the server would
      }
    });
  }
});
