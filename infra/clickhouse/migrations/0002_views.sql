-- Materialized views: aggregated as rows arrive, read by the stats API and by
-- data teams (docs/analytics.md). Minutes are UTC minutes of event time.
-- Each target table keeps a deduplication window too: a batch the archiver
-- retries with the same token is skipped here even when the events table had
-- already taken it (and taken here when this view had missed it).

-- Per room and minute: events, comments, reactions (sum of burst counts) and
-- the set of users who commented (exact, mergeable across minutes).
CREATE TABLE IF NOT EXISTS ${database}.room_minute
(
    room_id   LowCardinality(String),
    minute    DateTime('UTC'),
    events    SimpleAggregateFunction(sum, UInt64),
    comments  SimpleAggregateFunction(sum, UInt64),
    reactions SimpleAggregateFunction(sum, UInt64),
    chatters  AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (room_id, minute)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.room_minute_mv TO ${database}.room_minute AS
SELECT
    room_id,
    toStartOfMinute(occurred_at) AS minute,
    count() AS events,
    countIf(kind = 'CommentPosted') AS comments,
    sumIf(toUInt64(reaction_count), kind = 'ReactionAdded') AS reactions,
    uniqExactStateIf(user_id, kind = 'CommentPosted') AS chatters
FROM ${database}.events
GROUP BY room_id, minute;

-- Per room, minute and emoji: reactions (sum of counts) and reaction events.
CREATE TABLE IF NOT EXISTS ${database}.room_minute_reactions
(
    room_id         LowCardinality(String),
    minute          DateTime('UTC'),
    emoji           LowCardinality(String),
    reactions       UInt64,
    reaction_events UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (room_id, minute, emoji)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.room_minute_reactions_mv TO ${database}.room_minute_reactions AS
SELECT
    room_id,
    toStartOfMinute(occurred_at) AS minute,
    emoji,
    sum(toUInt64(reaction_count)) AS reactions,
    count() AS reaction_events
FROM ${database}.events
WHERE kind = 'ReactionAdded'
GROUP BY room_id, minute, emoji;

-- Moderation actions per room and minute: deletions, verdicts, mutes, pins,
-- by the role that acted (system = the moderation pipeline) and rule.
CREATE TABLE IF NOT EXISTS ${database}.moderation_minute
(
    room_id    LowCardinality(String),
    minute     DateTime('UTC'),
    action     LowCardinality(String) COMMENT 'deleted, verdict:allow, verdict:hold, verdict:delete, muted, pinned, unpinned',
    actor_role LowCardinality(String),
    rule       LowCardinality(String),
    actions    UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (room_id, minute, action, actor_role, rule)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.moderation_minute_mv TO ${database}.moderation_minute AS
SELECT
    room_id,
    toStartOfMinute(occurred_at) AS minute,
    multiIf(
        kind = 'CommentDeleted', 'deleted',
        kind = 'ModerationDecided', concat('verdict:', verdict),
        kind = 'UserMuted', 'muted',
        kind = 'CommentPinned', 'pinned',
        'unpinned') AS action,
    role AS actor_role,
    rule,
    count() AS actions
FROM ${database}.events
WHERE kind IN ('CommentDeleted', 'ModerationDecided', 'UserMuted', 'CommentPinned', 'CommentUnpinned')
GROUP BY room_id, minute, action, actor_role, rule;

-- Comments per room, hour and user: top chatters over any range of hours.
CREATE TABLE IF NOT EXISTS ${database}.chatter_hour
(
    room_id  LowCardinality(String),
    hour     DateTime('UTC'),
    user_id  String,
    comments UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (room_id, hour, user_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${database}.chatter_hour_mv TO ${database}.chatter_hour AS
SELECT
    room_id,
    toStartOfHour(occurred_at) AS hour,
    user_id,
    count() AS comments
FROM ${database}.events
WHERE kind = 'CommentPosted'
GROUP BY room_id, hour, user_id;
