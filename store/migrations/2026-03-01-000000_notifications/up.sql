-- Notifications (issue #10): the notifications hub kind's persisted
-- notifications and each user's acknowledged / read state. Both back ends.

-- One notification: its audience (a user, a tenant, a channel, or everyone
-- of the hub) and what it says. `id` is time-ordered like message ids.
CREATE TABLE notifications (
    id BIGINT PRIMARY KEY,
    hub TEXT NOT NULL,
    -- 'user', 'tenant', 'channel' or 'all'
    audience TEXT NOT NULL,
    -- the user id, tenant or channel; '' for 'all'
    audience_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT,
    -- JSON text
    data TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX notifications_audience ON notifications (hub, audience, audience_id, id);
CREATE INDEX notifications_created ON notifications (created_at);

-- One user's state of one notification (absent: neither acknowledged nor read).
CREATE TABLE notification_states (
    notification_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    acknowledged_at BIGINT,
    read_at BIGINT,
    PRIMARY KEY (notification_id, user_id)
);
