-- Postgres twin of sqlite/002: characters get a stable id, their references (clip and stills, as bytea) and
-- the ids each backend account gave them. Here the child rows are tied to their character by a foreign key,
-- so removing a character removes them too and none can outlive it.
ALTER TABLE characters ADD COLUMN id TEXT;
UPDATE characters SET id = 'c' || substr(md5(scope || '/' || handle || random()::text), 1, 12) WHERE id IS NULL;
ALTER TABLE characters ALTER COLUMN id SET NOT NULL;
ALTER TABLE characters ADD CONSTRAINT characters_id UNIQUE (id);

CREATE TABLE character_references (
    character_id TEXT NOT NULL REFERENCES characters (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    position INTEGER NOT NULL,
    mime_type TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    seconds DOUBLE PRECISION,
    data BYTEA NOT NULL,
    PRIMARY KEY (character_id, kind, position)
);

CREATE TABLE character_native_ids (
    character_id TEXT NOT NULL REFERENCES characters (id) ON DELETE CASCADE,
    account TEXT NOT NULL,
    native_id TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (character_id, account)
);

-- As in SQLite: an id a character got at the Videos API before this migration is kept as the `legacy`
-- account's (a no-op on a database created with both migrations).
INSERT INTO character_native_ids (character_id, account, native_id, created_at)
SELECT id, 'legacy', api_character_id, created_at FROM characters WHERE api_character_id != '';
