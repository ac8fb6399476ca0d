-- Postgres twin of sqlite/009: processes that share this database, and the creates they send.
-- Each running process beats here every SORACAST_HEARTBEAT_SECONDS and holds an advisory lock (lock_key) on a
-- connection of its own while it lives; one that stopped beating, lost its lock or ended is dead, and the jobs
-- it held are taken over without waiting for their leases to run out.
CREATE TABLE processes (
    owner TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    beat_at TIMESTAMPTZ NOT NULL,
    beat_seconds DOUBLE PRECISION NOT NULL,
    lock_key INTEGER,
    ended_at TIMESTAMPTZ
);

-- One create-rate limiter per backend account for every process: when the next create may go, and how long a
-- 429 from the provider holds every create back.
CREATE TABLE submit_turns (
    account TEXT PRIMARY KEY,
    next_at TIMESTAMPTZ NOT NULL,
    held_until TIMESTAMPTZ
);
