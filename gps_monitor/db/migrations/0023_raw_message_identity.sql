-- One raw_messages row per MQTT message (issue 14 item 14): a message the broker redelivers
-- (after a crash or a broker restart between our commit and its PUBACK) is the same message:
-- same topic, same payload bytes and same MQTT packet identifier (a broker resends an
-- unacknowledged message with its identifier; a terminal sending the same bytes twice sends two
-- messages). message_key is a 64-bit BLAKE2b of the three (gps_monitor.db.positions.message_key;
-- NULL for QoS 0, never redelivered); the writer looks a message up by it (confirming on the
-- bytes) only when the message stored no new position, and then adds no second row.
-- Not a unique index: in TimescaleDB mode raw_messages is a hypertable on received_at, and a
-- unique index there must contain received_at, which differs between deliveries. Rows stored
-- before this migration have no key (NULL) and are never matched.
ALTER TABLE raw_messages ADD COLUMN IF NOT EXISTS message_key bigint;
CREATE INDEX IF NOT EXISTS raw_messages_message_key_idx ON raw_messages (message_key, received_at);
