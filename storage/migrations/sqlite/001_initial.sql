-- Characters are keyed by workspace and handle: one workspace never sees another's.
CREATE TABLE characters (
    scope TEXT NOT NULL,
    handle TEXT NOT NULL,
    name TEXT NOT NULL,
    api_character_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    source TEXT NOT NULL,
    source_ref TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (scope, handle)
);

CREATE TABLE generations (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    platform TEXT NOT NULL,
    status TEXT NOT NULL,
    api_video_id TEXT,
    created_at TEXT NOT NULL,
    delivered_at TEXT,
    delivering_at TEXT,
    -- The delivery target is written apart from the body, so an adapter recording its message id never
    -- races a tracker saving a status.
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
    received_at TEXT NOT NULL
);
