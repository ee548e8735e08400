/** The projections this product keeps, built from config. */
import type { Config } from '../core/config.ts';
import type { Projection } from './projection.ts';
import { feedProjection } from './projections/feed.ts';
import { giftsProjection } from './projections/gifts.ts';
import { heldProjection } from './projections/held.ts';
import { roomStateProjection } from './projections/room-state.ts';
import { sampledProjection } from './projections/sampled.ts';
import { talliesProjection } from './projections/tallies.ts';

export const PROJECTION_NAMES = ['feed', 'sampled', 'tallies', 'state', 'held', 'gifts'] as const;
export type ProjectionName = (typeof PROJECTION_NAMES)[number];

export function projectionsOf(cfg: Config): Record<ProjectionName, Projection<unknown>> {
  return {
    feed: feedProjection(cfg.pipelines.feedMaxItems),
    sampled: sampledProjection(cfg.pipelines.sampledPerSecond, cfg.pipelines.feedMaxItems),
    tallies: talliesProjection(),
    state: roomStateProjection(),
    held: heldProjection(cfg.pipelines.heldMaxItems, cfg.pipelines.heldLookbackRecords),
    gifts: giftsProjection(cfg.pipelines.leaderboardSize),
  } as Record<ProjectionName, Projection<unknown>>;
}
