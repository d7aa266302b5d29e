DROP TABLE notification_states;
DROP TABLE notifications;
