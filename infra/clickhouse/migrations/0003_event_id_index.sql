-- Point lookups of one event by its id: the gateway checks that a pin or a
-- deletion names a comment of the room (archive/reader.ts, findComment). The
-- sorting key (room_id, occurred_at, event_id) narrows a lookup to the room's
-- granules; this skip index narrows those to the one or two whose bloom filter
-- may hold the id, so a lookup, and a miss too (an id that names nothing,
-- which is what a bad request costs), reads little even in a room of millions.
ALTER TABLE ${database}.events ADD INDEX IF NOT EXISTS event_id_bloom event_id TYPE bloom_filter(0.01) GRANULARITY 1;

-- Builds the index for the parts written before it existed (on a server, a
-- mutation that runs in the background; lookups are correct meanwhile, only slower).
ALTER TABLE ${database}.events MATERIALIZE INDEX event_id_bloom;
