DROP INDEX messages_unbroadcast;
ALTER TABLE messages DROP COLUMN broadcast_at;
ALTER TABLE messages DROP COLUMN stored_by;
ALTER TABLE messages DROP COLUMN message_type;
