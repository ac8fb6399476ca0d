-- Processes that share this database, and the creates they send, so that several processes act as one.
-- Each running process beats here every SORACAST_HEARTBEAT_SECONDS; one that stopped beating (or ended) is
-- dead, and the jobs it held are taken over without waiting for their leases to run out.
CREATE TABLE processes (
    owner TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    beat_at TEXT NOT NULL,
    beat_seconds REAL NOT NULL,
    lock_key INTEGER,
    ended_at TEXT
);

-- One create-rate limiter per backend account for every process: when the next create may go, and how long a
-- 429 from the provider holds every create back.
CREATE TABLE submit_turns (
    account TEXT PRIMARY KEY,
    next_at TEXT NOT NULL,
    held_until TEXT
);
