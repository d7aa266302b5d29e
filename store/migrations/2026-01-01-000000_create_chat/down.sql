DROP TABLE read_positions;
DROP TABLE messages;
DROP TABLE participants;
DROP TABLE conversations;
