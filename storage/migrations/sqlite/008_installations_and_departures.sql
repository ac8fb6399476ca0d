-- Chat apps installed by many workspaces (Slack's OAuth mode), and workspaces that removed soracast.
-- An installation is found by its ids; everything else about it, tokens included, is one value sealed with
-- SORACAST_SECRET_KEY (Fernet) by the adapter: the database never holds a token in the clear.
CREATE TABLE installations (
    platform TEXT NOT NULL,
    org_id TEXT NOT NULL DEFAULT '',
    workspace_id TEXT NOT NULL DEFAULT '',
    sealed TEXT NOT NULL,
    installed_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (platform, org_id, workspace_id)
);

-- Workspaces served through an organisation-wide installation, so removing that one finds them all.
CREATE TABLE org_workspaces (
    platform TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (platform, workspace_id)
);
CREATE INDEX org_workspaces_org ON org_workspaces (platform, org_id);

-- Workspaces that removed soracast: their data is deleted by the sweep once purge_after has passed.
CREATE TABLE retired_scopes (
    scope TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    retired_at TEXT NOT NULL,
    purge_after TEXT NOT NULL
);
CREATE INDEX retired_scopes_due ON retired_scopes (purge_after);
