-- The full event log, one row per event, every kind. `${database}` is the
-- configured database (CLICKHOUSE_DATABASE); the migrator substitutes it so the
-- same statements run on the embedded engine and on a server.
--
-- Exactly once in effect:
-- * ReplacingMergeTree keyed by (room_id, occurred_at, event_id): a row written
--   twice (a redelivery, a re-produced event) collapses into one; queries that
--   must never see a duplicate read with FINAL.
-- * non_replicated_deduplication_window: the archiver inserts each batch with
--   insert_deduplication_token = <topic>/<partition>/<first>-<last>, so a retried
--   batch is dropped by this table and, per table, by every materialized view.
CREATE TABLE IF NOT EXISTS ${database}.events
(
    event_id        String,
    room_id         LowCardinality(String),
    kind            LowCardinality(String) COMMENT 'payload type: CommentPosted, ReactionAdded, CommentDeleted, ...',
    occurred_at     DateTime64(3, 'UTC') COMMENT 'event time (the actor''s action)',
    video_offset_ms Nullable(Int64) COMMENT 'ms since the stream started, when the client knew it',
    user_id         String COMMENT 'actor',
    role            LowCardinality(String) COMMENT 'actor role: viewer, moderator, broadcaster, admin, system',
    client_msg_id   Nullable(String),
    -- CommentPosted (text also holds a pin''s text and a stream''s title)
    text            String,
    display_mode    LowCardinality(String) COMMENT 'scroll, top, bottom',
    color           UInt32 COMMENT 'RGB 0xRRGGBB',
    size            LowCardinality(String) COMMENT 'small, medium, large',
    reply_to        Nullable(String),
    -- ReactionAdded
    emoji           LowCardinality(String),
    reaction_count  UInt32,
    -- CommentDeleted, CommentPinned, CommentUnpinned, ModerationDecided, UserMuted
    target_event_id String,
    target_user_id  String COMMENT 'ModerationDecided.targetUserId, UserMuted.userId',
    deleted_by      String,
    reason          String,
    verdict         LowCardinality(String) COMMENT 'allow, hold, delete',
    labels          Array(LowCardinality(String)),
    score           Float64,
    rule            LowCardinality(String),
    until_at        Nullable(DateTime64(3, 'UTC')) COMMENT 'pin or mute expiry',
    mute_kind       LowCardinality(String) COMMENT 'shadow, visible',
    -- The whole payload as JSON (with its type): replay rebuilds the exact event
    -- from it, so the projections see what they saw live.
    payload         String CODEC(ZSTD(3)),
    kafka_topic     LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset    UInt64,
    kafka_timestamp DateTime64(3, 'UTC'),
    archived_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX log_position kafka_offset TYPE minmax GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (room_id, occurred_at, event_id)
SETTINGS non_replicated_deduplication_window = 10000;

-- The archiver journals each batch's offset range before inserting it. After a
-- crash, the batch that starts at the committed offset is re-formed exactly
-- (same records, same token), so whatever part of it already landed — in the
-- events table or in any view — is deduplicated and the rest is filled in.
CREATE TABLE IF NOT EXISTS ${database}.archive_batches
(
    topic        LowCardinality(String),
    partition    UInt32,
    first_offset UInt64,
    last_offset  UInt64,
    rows         UInt32,
    token        String,
    at           DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (topic, partition, first_offset)
TTL toDateTime(at) + INTERVAL 30 DAY;
