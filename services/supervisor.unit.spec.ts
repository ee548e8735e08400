/** The supervisor's contract, with in-memory services (pure: no servers). */
import { describe, expect, it } from 'vitest';
import { Liveness, type Service } from '../core/service.ts';
import { Supervisor, worstOf } from './supervisor.ts';

class Fake implements Service {
  private readonly live = new Liveness();
  readonly failed = this.live.failed;
  constructor(
    readonly name: string,
    private readonly journal: string[],
    private readonly failStart = false,
  ) {}
  async start(): Promise<void> {
    if (this.failStart) throw new Error(`${this.name} cannot start`);
    this.journal.push(`start ${this.name}`);
    this.live.set('ok');
  }
  async stop(): Promise<void> {
    this.journal.push(`stop ${this.name}`);
    this.live.set('stopped');
  }
  health() {
    return this.live.health;
  }
  die(): void {
    this.live.died(new Error('consumer crashed'));
  }
}

describe('Supervisor', () => {
  it('starts in order, reports health as one, stops in reverse order', async () => {
    const j: string[] = [];
    const s = new Supervisor([new Fake('processors', j), new Fake('archiver', j), new Fake('gateway', j)]);
    expect(s.health().status).toBe('starting');
    await s.start();
    expect(s.health()).toEqual({ status: 'ok', services: { processors: { status: 'ok' }, archiver: { status: 'ok' }, gateway: { status: 'ok' } } });
    await s.stop();
    await s.stop(); // twice is fine
    expect(j).toEqual(['start processors', 'start archiver', 'start gateway', 'stop gateway', 'stop archiver', 'stop processors']);
  });

  it('stops what it started when one service cannot start, and rethrows', async () => {
    const j: string[] = [];
    const s = new Supervisor([new Fake('a', j), new Fake('b', j, true), new Fake('c', j)]);
    await expect(s.start()).rejects.toThrow('b cannot start');
    expect(j).toEqual(['start a', 'stop a']);
  });

  it('a service that dies after start is seen in health and settles `failed`', async () => {
    const j: string[] = [];
    const dying = new Fake('moderation', j);
    const s = new Supervisor([new Fake('processors', j), dying]);
    await s.start();
    dying.die();
    const f = await s.failed;
    expect(f.service).toBe('moderation');
    expect(s.health().status).toBe('down');
    expect(s.health().services.moderation).toEqual({ status: 'down', detail: 'consumer crashed' });
  });

  it('the worst status wins', () => {
    expect(worstOf({ a: { status: 'ok' }, b: { status: 'degraded' } })).toBe('degraded');
    expect(worstOf({ a: { status: 'starting' }, b: { status: 'down' } })).toBe('down');
    expect(worstOf({})).toBe('ok');
  });
});
