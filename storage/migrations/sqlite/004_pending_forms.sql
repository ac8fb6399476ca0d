-- Forms opened in chat that must survive a restart until they are submitted (Discord's "Make character" on a
-- member's message keeps the attachment it was opened on here). Generic: a key, a JSON body, an expiry.
CREATE TABLE pending_forms (
    key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX pending_forms_expiry ON pending_forms (expires_at);
