-- Postgres twin of sqlite/007: who may use a character, its standing instructions, its owner's notices and the
-- confirmation of the right to use its subject. Rows that belong to a character go with it (foreign keys).
ALTER TABLE characters ADD COLUMN sharing TEXT NOT NULL DEFAULT 'everyone';
ALTER TABLE characters ADD COLUMN instructions TEXT NOT NULL DEFAULT '';
ALTER TABLE characters ADD COLUMN notify_owner BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE characters ADD COLUMN rights_confirmed_by TEXT;
ALTER TABLE characters ADD COLUMN rights_confirmed_at TIMESTAMPTZ;

CREATE TABLE character_access (
    character_id TEXT NOT NULL REFERENCES characters (id) ON DELETE CASCADE,
    person_id TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (character_id, person_id)
);

CREATE TABLE access_requests (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    character_id TEXT NOT NULL REFERENCES characters (id) ON DELETE CASCADE,
    requester_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    decided_by TEXT,
    decided_at TIMESTAMPTZ,
    owner_told BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE UNIQUE INDEX access_requests_open ON access_requests (character_id, requester_id) WHERE status = 'pending';
CREATE INDEX access_requests_scope ON access_requests (scope, status);

-- Not tied to generations by a key: a request's appearances are stored just before the request itself.
CREATE TABLE character_appearances (
    character_id TEXT NOT NULL REFERENCES characters (id) ON DELETE CASCADE,
    generation_id TEXT NOT NULL,
    PRIMARY KEY (character_id, generation_id)
);
CREATE INDEX character_appearances_generation ON character_appearances (generation_id);
INSERT INTO character_appearances (character_id, generation_id)
SELECT DISTINCT used ->> 'character_id', g.id
FROM generations AS g
CROSS JOIN LATERAL jsonb_array_elements(COALESCE(g.body::jsonb -> 'characters', '[]'::jsonb)) AS used
WHERE used ->> 'character_id' IN (SELECT id FROM characters)
ON CONFLICT DO NOTHING;

CREATE TABLE owner_notices (
    generation_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    platform TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    state TEXT NOT NULL,
    sent_at TIMESTAMPTZ,
    PRIMARY KEY (generation_id, owner_id)
);
CREATE INDEX owner_notices_open ON owner_notices (platform, state);
CREATE INDEX owner_notices_owner ON owner_notices (scope, owner_id, sent_at);
