"""Versioned schema migrations for the project database.

Each entry of ``MIGRATIONS`` moves the schema one version up and runs once, inside a transaction,
recorded in ``schema_version``. Never edit a released migration: append a new one.
"""
from __future__ import annotations

import duckdb

# The bodies of schema v2's views, kept as text so that `current_labels_of` can run the same query
# over a few items' events only (DuckDB does not push an item filter through the aggregates).
USER_VOTES = """            SELECT e.item_id, e.user_name,
                   arg_max(coalesce(c.merged_into, e.class_id), e.id) AS class_id,
                   arg_max(e.kind, e.id) AS kind,
                   arg_max(e.source, e.id) AS source,
                   arg_max(e.model_round, e.id) AS model_round,
                   arg_max(e.created_at, e.id) AS created_at,
                   max(e.id) AS event_id
            FROM {events} e LEFT JOIN classes c ON c.id = e.class_id
            WHERE e.source NOT IN ('adjudication', 'merge') GROUP BY e.item_id, e.user_name"""
ADJUDICATIONS = """            SELECT e.item_id,
                   arg_max(coalesce(c.merged_into, e.class_id), e.id) AS class_id,
                   arg_max(e.kind, e.id) AS kind,
                   arg_max(e.user_name, e.id) AS user_name,
                   max(e.id) AS event_id
            FROM {events} e LEFT JOIN classes c ON c.id = e.class_id
            WHERE e.source = 'adjudication' GROUP BY e.item_id"""
CURRENT_LABELS = """            WITH tallies AS (
                SELECT item_id, class_id, count(*) AS n, max(event_id) AS last_id
                FROM user_votes WHERE kind = 'label' GROUP BY item_id, class_id),
            ranked AS (
                SELECT *, row_number() OVER (PARTITION BY item_id ORDER BY n DESC, last_id DESC) AS rk,
                       sum(n) OVER (PARTITION BY item_id) AS n_votes
                FROM tallies),
            majority AS (
                SELECT r.item_id, r.class_id, 'label' AS kind, v.user_name, v.source, r.last_id AS event_id,
                       CAST(r.n_votes AS INTEGER) AS n_votes, CAST(r.n AS INTEGER) AS n_agree
                FROM ranked r JOIN user_votes v ON v.event_id = r.last_id WHERE r.rk = 1),
            skipped AS (
                SELECT item_id, CAST(NULL AS INTEGER) AS class_id, 'skip' AS kind,
                       arg_max(user_name, event_id) AS user_name, arg_max(source, event_id) AS source,
                       max(event_id) AS event_id, 0 AS n_votes, 0 AS n_agree
                FROM user_votes WHERE item_id NOT IN (SELECT item_id FROM tallies) GROUP BY item_id),
            decided AS (SELECT * FROM majority UNION ALL SELECT * FROM skipped)
            SELECT a.item_id, a.class_id, a.kind, a.user_name, 'adjudication' AS source, a.event_id,
                   coalesce(d.n_votes, 0) AS n_votes, coalesce(d.n_agree, 0) AS n_agree
            FROM adjudications a LEFT JOIN decided d USING (item_id)
            UNION ALL
            SELECT d.* FROM decided d WHERE d.item_id NOT IN (SELECT item_id FROM adjudications)"""


MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the data model of DESIGN.md
    (
        "CREATE SEQUENCE IF NOT EXISTS item_ids START 1",
        """CREATE TABLE items (
            id BIGINT PRIMARY KEY DEFAULT nextval('item_ids'),
            uri VARCHAR NOT NULL UNIQUE,
            sha256 VARCHAR,
            width INTEGER,
            height INTEGER,
            status VARCHAR NOT NULL CHECK (status IN ('ok', 'unreadable', 'duplicate')),
            reason VARCHAR,
            added_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        )""",
        "CREATE INDEX items_sha ON items (sha256)",
        "CREATE SEQUENCE IF NOT EXISTS class_ids START 1",
        """CREATE TABLE classes (
            id INTEGER PRIMARY KEY DEFAULT nextval('class_ids'),
            name VARCHAR NOT NULL UNIQUE,
            created_by VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            merged_into INTEGER
        )""",
        "CREATE SEQUENCE IF NOT EXISTS event_ids START 1",
        # Append-only. kind: label (class_id set), skip (class_id null), undo (revokes = batch).
        """CREATE TABLE annotations (
            id BIGINT PRIMARY KEY DEFAULT nextval('event_ids'),
            item_id BIGINT NOT NULL,
            class_id INTEGER,
            kind VARCHAR NOT NULL CHECK (kind IN ('label', 'skip', 'undo')),
            user_name VARCHAR NOT NULL,
            source VARCHAR NOT NULL,
            batch_id VARCHAR NOT NULL,
            revokes VARCHAR,
            model_round INTEGER,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        )""",
        "CREATE INDEX annotations_item ON annotations (item_id)",
        "CREATE INDEX annotations_batch ON annotations (batch_id)",
        """CREATE TABLE users (
            name VARCHAR PRIMARY KEY,
            role VARCHAR NOT NULL CHECK (role IN ('annotator', 'reviewer', 'admin')),
            password_hash VARCHAR,
            disabled BOOLEAN NOT NULL DEFAULT false,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        )""",
        "CREATE SEQUENCE IF NOT EXISTS round_ids START 1",
        """CREATE TABLE rounds (
            id INTEGER PRIMARY KEY DEFAULT nextval('round_ids'),
            started_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            finished_at TIMESTAMP,
            status VARCHAR NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'discarded')),
            n_labels INTEGER NOT NULL,
            last_event_id BIGINT NOT NULL,
            backbone VARCHAR NOT NULL,
            vector_version VARCHAR NOT NULL,
            head_config VARCHAR NOT NULL,
            metrics VARCHAR,
            predictions_file VARCHAR,
            error VARCHAR
        )""",
        "CREATE TABLE settings (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
        # Live label events: not revoked by an undo. The current label of an item is its latest
        # live label or skip event; a skip leaves the item without a label.
        """CREATE VIEW live_events AS
            SELECT a.* FROM annotations a
            WHERE a.kind IN ('label', 'skip')
              AND a.batch_id NOT IN (SELECT revokes FROM annotations WHERE kind = 'undo')""",
        """CREATE VIEW current_labels AS
            SELECT item_id,
                   arg_max(class_id, id) AS class_id,
                   arg_max(kind, id) AS kind,
                   arg_max(user_name, id) AS user_name,
                   arg_max(source, id) AS source,
                   max(id) AS event_id
            FROM live_events GROUP BY item_id""",
    ),
    # 2: team consensus. Each person's newest live event on an item is their vote; the current label
    # is the live adjudication when a reviewer has settled the item, else the majority of the votes
    # (a tie goes to the class voted most recently). An item whose only votes are skips is skipped.
    (
        # Votes and adjudications name the class an item's label counts as now: a merged class's
        # labels count for the class it was merged into (and for itself again after an un-merge).
        # Relabel events written by a merge are history, not anyone's vote.
        "CREATE VIEW user_votes AS " + USER_VOTES.format(events="live_events"),
        "CREATE VIEW adjudications AS " + ADJUDICATIONS.format(events="live_events"),
        "DROP VIEW current_labels",
        "CREATE VIEW current_labels AS " + CURRENT_LABELS,
    ),
    # 3: sign-in throttling. One row per key (``name:<user name>`` or ``client:<address>``) with its
    # consecutive failed sign-ins; a name's row is ``locked`` after too many, until an admin clears it.
    (
        """CREATE TABLE sign_in_failures (
            key VARCHAR PRIMARY KEY,
            failures INTEGER NOT NULL,
            last_failure TIMESTAMP NOT NULL,
            locked BOOLEAN NOT NULL DEFAULT false
        )""",
    ),
    # 4: signed-in browser sessions that survive a reload. The browser holds a random token in an
    # HttpOnly cookie; only its SHA-256 is stored. A token ends when it expires or is revoked (sign-out).
    (
        """CREATE TABLE web_sessions (
            token_hash VARCHAR PRIMARY KEY,
            user_name VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            expires_at TIMESTAMP NOT NULL,
            revoked_at TIMESTAMP
        )""",
    ),
    # 5: predictions of people's own models (``import-predictions``). One row per model: its predictions
    # file under ``.quorum/models/``, and how it joins a round's ensemble: ``weight`` NULL means the share is
    # learned from the human labels each round, a number in [0, 1] is a fixed share; ``enabled`` false
    # leaves it out. ``changed_at`` tells the retrain worker a round is due.
    (
        """CREATE TABLE external_models (
            name VARCHAR PRIMARY KEY,
            file VARCHAR NOT NULL,
            n_items INTEGER NOT NULL,
            n_classes INTEGER NOT NULL,
            source VARCHAR NOT NULL,
            imported_by VARCHAR NOT NULL,
            imported_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            weight DOUBLE,
            enabled BOOLEAN NOT NULL DEFAULT true,
            changed_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        )""",
    ),
)


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER, applied_at TIMESTAMP)")
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply every pending migration; returns the resulting version."""
    version = current_version(con)
    for number, statements in enumerate(MIGRATIONS, start=1):
        if number <= version:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            for statement in statements:
                con.execute(statement)
            con.execute("INSERT INTO schema_version VALUES (?, current_timestamp)", [number])
        except duckdb.Error:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        version = number
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {version} is newer than this Quorum ({len(MIGRATIONS)}); upgrade Quorum"
        )
    return version


LIVE_EVENTS_OF = """SELECT a.* FROM annotations a
    WHERE a.item_id IN (SELECT unnest(?::BIGINT[])) AND a.kind IN ('label', 'skip')
      AND a.batch_id NOT IN (SELECT revokes FROM annotations WHERE kind = 'undo')"""


def over_items(query: str) -> str:
    """``query`` with ``user_votes`` and ``adjudications`` standing for those views restricted to the
    items in one ``BIGINT[]`` parameter: the same rows, without aggregating every item's events (a
    neighbourhood view asks about a dozen items)."""
    return (f"WITH item_events AS ({LIVE_EVENTS_OF}), "
            f"user_votes AS ({USER_VOTES.format(events='item_events')}), "
            f"adjudications AS ({ADJUDICATIONS.format(events='item_events')}) {query}")


def current_labels_of() -> str:
    """``SELECT * FROM current_labels WHERE item_id IN (the parameter)``, reading only those items' events."""
    return over_items(f"SELECT * FROM ({CURRENT_LABELS})")
