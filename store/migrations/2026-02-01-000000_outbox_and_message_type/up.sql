-- The broadcast outbox and the message type (issue #9). Both back ends:
-- ADD COLUMN one at a time and a partial index, which PostgreSQL and SQLite
-- share. Run under the migration lock (store/src/migrations.rs), so nodes
-- starting at once on one database apply it once.

-- The app's message type ("Text", "Image", ...); NULL: the hub
-- definition's default.
ALTER TABLE messages ADD COLUMN message_type TEXT;
-- The node that stored the message (the chat hub writes `<node id>/<hub>`); NULL: stored
-- by no node (a tool, a test), never swept.
ALTER TABLE messages ADD COLUMN stored_by TEXT;
-- When the group send of the message was done (Unix ms); NULL until then.
ALTER TABLE messages ADD COLUMN broadcast_at BIGINT;

-- Messages stored before this migration were broadcast (or never will be).
UPDATE messages SET broadcast_at = sent_at;

-- The outbox: only unmarked messages are in it, so it stays small.
CREATE INDEX messages_unbroadcast ON messages (stored_by, id) WHERE broadcast_at IS NULL;
