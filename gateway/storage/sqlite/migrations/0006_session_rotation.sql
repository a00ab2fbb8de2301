-- A privilege change (roles) marks the user's sessions; the next request rotates the token.
ALTER TABLE sessions ADD COLUMN rotate_pending INTEGER NOT NULL DEFAULT 0;
