-- One schema for PostgreSQL and SQLite: only portable types (TEXT, BIGINT)
-- and constraints. Times are Unix milliseconds; message ids are time-ordered
-- 64-bit integers (see store/src/id.rs).
CREATE TABLE conversations (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE participants (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX participants_by_user ON participants (user_id);

CREATE TABLE messages (
    id BIGINT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    sender_id TEXT NOT NULL,
    content TEXT NOT NULL,
    attachments TEXT,
    client_message_id TEXT,
    sent_at BIGINT NOT NULL,
    key_id TEXT,
    UNIQUE (conversation_id, sender_id, client_message_id)
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
CREATE INDEX messages_by_sent_at ON messages (sent_at);

CREATE TABLE read_positions (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    last_read_id BIGINT NOT NULL,
    read_at BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
