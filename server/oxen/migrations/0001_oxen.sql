-- Repositories: (tenant, namespace, name) is the identity a client sees; the same ns/name
-- under two tenants is two repositories. id is internal (never shown).
CREATE TABLE oxen_repos (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (tenant, namespace, name)
);
-- Commits: id is Oxen-style (xxh3-128 hex); generation = 1 + max(parent generations), so
-- history orders newest first without walking timestamps (two commits can share a second).
CREATE TABLE oxen_commits (
    repo_id INTEGER NOT NULL REFERENCES oxen_repos (id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    parent_ids BLOB NOT NULL,
    message TEXT NOT NULL,
    author TEXT NOT NULL,
    email TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (repo_id, id)
);
CREATE TABLE oxen_commit_parents (
    repo_id INTEGER NOT NULL,
    commit_id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    PRIMARY KEY (repo_id, commit_id, parent_id),
    FOREIGN KEY (repo_id, commit_id) REFERENCES oxen_commits (repo_id, id) ON DELETE CASCADE
);
-- Trees: one row per (commit, file path), a full snapshot per commit. A commit copies its
-- parent's rows with one INSERT ... SELECT (about 2 ms per 1,000 files) and then applies its
-- changes, so reading any revision is one indexed range scan. last_commit_id is the commit
-- that last changed the path (a metadata entry's latest_commit); data_type and mime_type are
-- sniffed once from the first 4 KiB at commit time so listings never open a blob.
CREATE TABLE oxen_tree_entries (
    repo_id INTEGER NOT NULL,
    commit_id TEXT NOT NULL,
    path TEXT NOT NULL,
    blob_key TEXT NOT NULL,
    hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    data_type TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    last_commit_id TEXT NOT NULL,
    PRIMARY KEY (repo_id, commit_id, path),
    FOREIGN KEY (repo_id, commit_id) REFERENCES oxen_commits (repo_id, id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX oxen_tree_entries_blob ON oxen_tree_entries (blob_key);
-- Branches: pointers moved by compare-and-swap (UPDATE ... WHERE commit_id = <expected>).
CREATE TABLE oxen_branches (
    repo_id INTEGER NOT NULL REFERENCES oxen_repos (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    PRIMARY KEY (repo_id, name)
);
