-- Characters become provider-neutral: a stable id, their references (clip and stills) stored beside them so
-- they move with the database, and the ids each backend account gave them, cached per account.
ALTER TABLE characters ADD COLUMN id TEXT;
UPDATE characters SET id = 'c' || lower(hex(randomblob(6))) WHERE id IS NULL;
CREATE UNIQUE INDEX characters_id ON characters (id);

CREATE TABLE character_references (
    character_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    position INTEGER NOT NULL,
    mime_type TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    seconds REAL,
    data BLOB NOT NULL,
    PRIMARY KEY (character_id, kind, position)
);

CREATE TABLE character_native_ids (
    character_id TEXT NOT NULL,
    account TEXT NOT NULL,
    native_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (character_id, account)
);

-- The id a character got at the Videos API before this migration: kept as the `legacy` account's, which the
-- OpenAI-shape backend falls back to, so nothing has to be registered again.
INSERT INTO character_native_ids (character_id, account, native_id, created_at)
SELECT id, 'legacy', api_character_id, created_at FROM characters WHERE api_character_id != '';
