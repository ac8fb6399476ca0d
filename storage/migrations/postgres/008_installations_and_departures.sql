-- Postgres twin of sqlite/008: installations (sealed by the adapter), organisation links, retired workspaces.
CREATE TABLE installations (
    platform TEXT NOT NULL,
    org_id TEXT NOT NULL DEFAULT '',
    workspace_id TEXT NOT NULL DEFAULT '',
    sealed TEXT NOT NULL,
    installed_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (platform, org_id, workspace_id)
);

CREATE TABLE org_workspaces (
    platform TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (platform, workspace_id)
);
CREATE INDEX org_workspaces_org ON org_workspaces (platform, org_id);

CREATE TABLE retired_scopes (
    scope TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    retired_at TIMESTAMPTZ NOT NULL,
    purge_after TIMESTAMPTZ NOT NULL
);
CREATE INDEX retired_scopes_due ON retired_scopes (purge_after);
