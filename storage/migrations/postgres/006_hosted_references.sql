-- Postgres twin of sqlite/006: reference files a provider account reads from URLs it hosts (fal's CDN),
-- uploaded once per file (content hash) and account, reused until shortly before `expires_at`.
CREATE TABLE hosted_references (
    account TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    url TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account, sha256)
);
CREATE INDEX hosted_references_expiry ON hosted_references (expires_at);
