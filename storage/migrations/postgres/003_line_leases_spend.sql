-- Postgres twin of sqlite/003: the fair line, leases and spending.
ALTER TABLE generations ADD COLUMN backend TEXT NOT NULL DEFAULT 'openai';
ALTER TABLE generations ADD COLUMN requester TEXT NOT NULL DEFAULT '';
-- Which process works on a generation, and until when; another process takes it over once this has passed.
ALTER TABLE generations ADD COLUMN lease_owner TEXT;
ALTER TABLE generations ADD COLUMN lease_until TIMESTAMPTZ;
CREATE INDEX generations_line ON generations (backend, status);
CREATE INDEX generations_lease ON generations (platform, delivered_at, lease_until);

-- What each generation costs a workspace: reserved when it joins the line, spent when it is sent, refunded
-- when the backend fails it without charge, released when it is cancelled or refused before being sent.
CREATE TABLE spend (
    generation_id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    person TEXT NOT NULL,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    seconds INTEGER NOT NULL,
    usd DOUBLE PRECISION,
    state TEXT NOT NULL,
    month TEXT NOT NULL,
    day TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX spend_month ON spend (scope, month, state);
CREATE INDEX spend_day ON spend (scope, person, day, state);
