-- Room membership grants of the rooms hub kind (issue #10): who may join a
-- room of a hub, granted and revoked by the app's backend through the REST
-- API. Both back ends share this SQL.
CREATE TABLE room_members (
    -- The hub's name (the last segment of its path).
    hub TEXT NOT NULL,
    -- The room's id.
    room_id TEXT NOT NULL,
    -- The user granted.
    user_id TEXT NOT NULL,
    -- When the grant was made (Unix ms).
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (hub, room_id, user_id)
);
