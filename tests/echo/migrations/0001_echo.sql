-- Echo's items: one row per POST /echo-v1/items, each with its job (same id).
CREATE TABLE echo_items (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    echoed INTEGER NOT NULL DEFAULT 0,
    -- the body's size, measured by the echo job's task in a worker process
    size INTEGER,
    created_at TEXT NOT NULL
);
CREATE INDEX echo_items_tenant ON echo_items (tenant, created_at);
