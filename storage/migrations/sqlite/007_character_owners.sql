-- A character belongs to someone (issue 16): who may use it, its standing instructions, whether its owner is
-- told about other people's videos with it, and who confirmed the right to use its subject. Existing characters
-- stay usable by everyone, with no instructions; their rights were never confirmed (NULL).
ALTER TABLE characters ADD COLUMN sharing TEXT NOT NULL DEFAULT 'everyone';
ALTER TABLE characters ADD COLUMN instructions TEXT NOT NULL DEFAULT '';
ALTER TABLE characters ADD COLUMN notify_owner INTEGER NOT NULL DEFAULT 1;
ALTER TABLE characters ADD COLUMN rights_confirmed_by TEXT;
ALTER TABLE characters ADD COLUMN rights_confirmed_at TEXT;

-- The people a character's owner approved (used when its sharing is 'approved').
CREATE TABLE character_access (
    character_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (character_id, person_id)
);

-- Requests to use someone's character; one pending request per person and character at most.
CREATE TABLE access_requests (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    character_id TEXT NOT NULL,
    requester_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    decided_by TEXT,
    decided_at TEXT,
    owner_told INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX access_requests_open ON access_requests (character_id, requester_id) WHERE status = 'pending';
CREATE INDEX access_requests_scope ON access_requests (scope, status);

-- Every video a character appears in, by the character's stable id (renames keep them), for /character videos.
CREATE TABLE character_appearances (
    character_id TEXT NOT NULL,
    generation_id TEXT NOT NULL,
    PRIMARY KEY (character_id, generation_id)
);
CREATE INDEX character_appearances_generation ON character_appearances (generation_id);
INSERT OR IGNORE INTO character_appearances (character_id, generation_id)
SELECT json_extract(used.value, '$.character_id'), g.id
FROM generations AS g, json_each(g.body, '$.characters') AS used
WHERE json_extract(used.value, '$.character_id') IN (SELECT id FROM characters);

-- A character's owner is told privately about each video someone else made with it: one note per video and
-- owner, sent once the video is posted (or gathered into a digest), kept here so none is lost or sent twice.
CREATE TABLE owner_notices (
    generation_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    platform TEXT NOT NULL,
    created_at TEXT NOT NULL,
    state TEXT NOT NULL,
    sent_at TEXT,
    PRIMARY KEY (generation_id, owner_id)
);
CREATE INDEX owner_notices_open ON owner_notices (platform, state);
CREATE INDEX owner_notices_owner ON owner_notices (scope, owner_id, sent_at);
