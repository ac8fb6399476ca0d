-- Postgres twin of sqlite/001: the same tables, with Postgres types (times as timestamptz). Migration numbers
-- are kept in step across engines, so version N means the same schema in both.

-- Characters are keyed by workspace and handle: one workspace never sees another's.
CREATE TABLE characters (
    scope TEXT NOT NULL,
    handle TEXT NOT NULL,
    name TEXT NOT NULL,
    api_character_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    source TEXT NOT NULL,
    source_ref TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT characters_scope_handle PRIMARY KEY (scope, handle)
);

CREATE TABLE generations (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    platform TEXT NOT NULL,
    status TEXT NOT NULL,
    api_video_id TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    delivered_at TIMESTAMPTZ,
    delivering_at TIMESTAMPTZ,
    -- The delivery target is written apart from the body, so an adapter recording its message id never
    -- races a tracker saving a status. Both are JSON documents kept as text: byte for byte what SQLite keeps,
    -- with no jsonb re-parse on every progress save (cast with ::jsonb to query them by hand).
    target TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX generations_pending ON generations (platform, delivered_at);
CREATE INDEX generations_scope ON generations (scope, created_at);
CREATE UNIQUE INDEX generations_video ON generations (api_video_id) WHERE api_video_id IS NOT NULL;

CREATE TABLE scope_settings (
    scope TEXT PRIMARY KEY,
    body TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    webhook_id TEXT PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL
);
