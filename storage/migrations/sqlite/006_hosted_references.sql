-- Reference files a provider account reads from URLs it hosts (fal's CDN): uploaded once per file and account,
-- reused until shortly before `expires_at` (the lifetime soracast asked for when it uploaded). Keyed by the
-- file's content hash, so the same stills are uploaded once whatever character has them.
CREATE TABLE hosted_references (
    account TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    url TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (account, sha256)
);
CREATE INDEX hosted_references_expiry ON hosted_references (expires_at);
