"""The back office's PostgreSQL schema, as the migrations that build it (table `office_schema` says which have run).
A migration is only ever appended. The totals the reports read are kept by triggers in the same transaction as
each row change, so a report never scans the rows themselves for its figures."""

from __future__ import annotations

import logging
from typing import Any

from office.errors import OfficeError

log = logging.getLogger(__name__)

MIGRATIONS: tuple[str, ...] = (
    # 1: terminals and their credentials; the owner's users and their sessions; the gathered journal rows
    """
    CREATE TABLE terminals (
        terminal_id   text PRIMARY KEY,
        shop          text NOT NULL DEFAULT '',
        token_hash    text NOT NULL UNIQUE,        -- SHA-256 of the terminal's bearer token (hex)
        created_at    timestamptz NOT NULL DEFAULT now(),
        last_contact  timestamptz,
        queue_depth   bigint,                      -- snapshots still waiting on the terminal after its last contact
        last_seq      bigint NOT NULL DEFAULT 0,   -- the last outbox version it had stored here
        received      bigint NOT NULL DEFAULT 0    -- snapshots received (repeats included)
    );
    CREATE TABLE users (
        name          text PRIMARY KEY,
        password_hash text NOT NULL,
        role          text NOT NULL CHECK (role IN ('owner', 'manager')),
        shop          text NOT NULL DEFAULT '',    -- a manager with a shop sees only that shop's terminals
        failures      integer NOT NULL DEFAULT 0,
        locked_until  timestamptz,
        created_at    timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE sessions (
        token_hash    text PRIMARY KEY,            -- SHA-256 of the cookie's value (hex)
        user_name     text NOT NULL REFERENCES users ON DELETE CASCADE,
        expires_at    timestamptz NOT NULL
    );
    CREATE INDEX sessions_expiry ON sessions (expires_at);
    CREATE TABLE txns (
        terminal_id     text NOT NULL REFERENCES terminals,
        id              bigint NOT NULL,           -- the terminal's journal row id
        version         bigint NOT NULL,           -- the outbox seq of the snapshot stored
        kind            text NOT NULL,
        method          text NOT NULL,
        entry_mode      text NOT NULL,
        amount          bigint NOT NULL,
        currency        text NOT NULL,
        status          text NOT NULL,
        stan            integer NOT NULL,
        masked_pan      text NOT NULL DEFAULT '',
        response_code   text NOT NULL DEFAULT '',
        auth_code       text NOT NULL DEFAULT '',
        rrn             text NOT NULL DEFAULT '',
        note            text NOT NULL DEFAULT '',
        merchant_id     text NOT NULL DEFAULT '',
        created_at      timestamptz NOT NULL,
        created_local   text NOT NULL,             -- as the terminal wrote it, with its offset
        local_day       date NOT NULL,             -- the terminal's local date and hour: what its reports go by
        local_hour      smallint NOT NULL,
        updated_at      text NOT NULL DEFAULT '',
        original_id     bigint,
        batch           integer NOT NULL DEFAULT 1,
        provider        text NOT NULL DEFAULT '',
        order_no        text NOT NULL DEFAULT '',
        wallet_trade_no text NOT NULL DEFAULT '',
        payer           text NOT NULL DEFAULT '',
        card_token      text NOT NULL DEFAULT '',
        operator        text NOT NULL DEFAULT '',
        chip_swiped     boolean NOT NULL DEFAULT false,
        cvm             text NOT NULL DEFAULT '',
        app_label       text NOT NULL DEFAULT '',
        PRIMARY KEY (terminal_id, id)
    );
    CREATE INDEX txns_day ON txns (local_day, terminal_id);
    -- what the anomaly rules look for, each in a partial index (the rows are few; the rules never scan a year)
    CREATE INDEX txns_refunds ON txns (local_day) INCLUDE (terminal_id, currency, method, original_id, id)
        WHERE kind = 'refund' AND status = 'approved';
    CREATE INDEX txns_sold_hour ON txns (local_hour, local_day) WHERE kind = 'sale' AND status = 'approved';
    CREATE INDEX txns_sold_amount ON txns (amount, local_day) INCLUDE (terminal_id, currency)
        WHERE kind = 'sale' AND status = 'approved';
    CREATE INDEX txns_declined ON txns (local_day) INCLUDE (terminal_id, card_token, currency, id)
        WHERE kind = 'sale' AND status = 'declined';
    CREATE INDEX txns_fallback ON txns (local_day) INCLUDE (terminal_id, card_token, currency, id)
        WHERE kind = 'sale' AND chip_swiped;
    CREATE INDEX txns_card ON txns (terminal_id, card_token)
        WHERE kind = 'sale' AND (status = 'declined' OR chip_swiped);
    CREATE TABLE sale_lines (
        terminal_id    text NOT NULL REFERENCES terminals,
        transaction_id bigint NOT NULL,
        line_no        integer NOT NULL,
        version        bigint NOT NULL,
        plu            text NOT NULL,
        name           text NOT NULL,
        quantity       integer NOT NULL,
        unit_price     bigint NOT NULL,
        tax_rate_bp    integer NOT NULL DEFAULT 0,
        PRIMARY KEY (terminal_id, transaction_id, line_no)
    );
    CREATE TABLE settlements (
        terminal_id        text NOT NULL REFERENCES terminals,
        batch              integer NOT NULL,
        version            bigint NOT NULL,
        created_at         text NOT NULL,
        debits             integer NOT NULL,
        debit_amount       bigint NOT NULL,
        credits            integer NOT NULL,
        credit_amount      bigint NOT NULL,
        host_debits        integer,
        host_debit_amount  bigint,
        host_credits       integer,
        host_credit_amount bigint,
        response_code      text NOT NULL,
        in_balance         boolean NOT NULL,
        PRIMARY KEY (terminal_id, batch)
    );
    """,
    # 2: the totals the reports read, kept by triggers, each per terminal for a local day and again for its month
    # (span 'day' or 'month', period = the day or the month's first day: a year is read from twelve months' rows):
    # rows by kind, status, method, entry mode and operator; approved sales by hour; items of approved sales.
    # A row's change takes its old figures out and puts its new ones in, in the transaction that changes it.
    """
    CREATE TABLE sale_totals (
        span text NOT NULL, period date NOT NULL, terminal_id text NOT NULL, currency text NOT NULL,
        kind text NOT NULL, status text NOT NULL, method text NOT NULL, entry_mode text NOT NULL,
        operator text NOT NULL, n bigint NOT NULL, amount bigint NOT NULL,
        PRIMARY KEY (span, period, terminal_id, currency, kind, status, method, entry_mode, operator)
    );
    CREATE TABLE hour_totals (
        span text NOT NULL, period date NOT NULL, terminal_id text NOT NULL, currency text NOT NULL,
        local_hour smallint NOT NULL, n bigint NOT NULL, amount bigint NOT NULL,
        PRIMARY KEY (span, period, terminal_id, currency, local_hour)
    );
    CREATE TABLE item_totals (
        span text NOT NULL, period date NOT NULL, terminal_id text NOT NULL, currency text NOT NULL,
        plu text NOT NULL, name text NOT NULL, quantity bigint NOT NULL, revenue bigint NOT NULL,
        PRIMARY KEY (span, period, terminal_id, currency, plu, name)
    );
    CREATE FUNCTION office_count(t txns, sign integer) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        spans text[] := ARRAY['day', 'month'];
        periods date[] := ARRAY[t.local_day, date_trunc('month', t.local_day)::date];
    BEGIN
        FOR i IN 1..2 LOOP
            INSERT INTO sale_totals AS d VALUES (spans[i], periods[i], t.terminal_id, t.currency, t.kind, t.status,
                t.method, t.entry_mode, t.operator, sign, sign * t.amount)
            ON CONFLICT (span, period, terminal_id, currency, kind, status, method, entry_mode, operator)
            DO UPDATE SET n = d.n + EXCLUDED.n, amount = d.amount + EXCLUDED.amount;
            IF t.kind = 'sale' AND t.status = 'approved' THEN
                INSERT INTO hour_totals AS h VALUES (spans[i], periods[i], t.terminal_id, t.currency, t.local_hour,
                    sign, sign * t.amount)
                ON CONFLICT (span, period, terminal_id, currency, local_hour)
                DO UPDATE SET n = h.n + EXCLUDED.n, amount = h.amount + EXCLUDED.amount;
                INSERT INTO item_totals AS it
                    SELECT spans[i], periods[i], t.terminal_id, t.currency, l.plu, l.name, sign * SUM(l.quantity),
                        sign * SUM(l.quantity * l.unit_price)
                    FROM sale_lines l WHERE l.terminal_id = t.terminal_id AND l.transaction_id = t.id
                    GROUP BY l.plu, l.name
                ON CONFLICT (span, period, terminal_id, currency, plu, name)
                DO UPDATE SET quantity = it.quantity + EXCLUDED.quantity, revenue = it.revenue + EXCLUDED.revenue;
            END IF;
        END LOOP;
    END $$;
    CREATE FUNCTION office_txns_totals() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND (OLD.local_day, OLD.currency, OLD.kind, OLD.status, OLD.method, OLD.entry_mode,
            OLD.operator, OLD.amount, OLD.local_hour) IS NOT DISTINCT FROM (NEW.local_day, NEW.currency, NEW.kind,
            NEW.status, NEW.method, NEW.entry_mode, NEW.operator, NEW.amount, NEW.local_hour) THEN
            RETURN NULL;
        END IF;
        IF TG_OP <> 'INSERT' THEN PERFORM office_count(OLD, -1); END IF;
        IF TG_OP <> 'DELETE' THEN PERFORM office_count(NEW, 1); END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER txns_totals AFTER INSERT OR UPDATE OR DELETE ON txns
        FOR EACH ROW EXECUTE FUNCTION office_txns_totals();
    CREATE FUNCTION office_line_totals() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO item_totals AS it
            SELECT s.span, s.period, t.terminal_id, t.currency, NEW.plu, NEW.name, NEW.quantity,
                NEW.quantity * NEW.unit_price
            FROM txns t, LATERAL (VALUES ('day', t.local_day), ('month', date_trunc('month', t.local_day)::date))
                AS s (span, period)
            WHERE t.terminal_id = NEW.terminal_id AND t.id = NEW.transaction_id
                AND t.kind = 'sale' AND t.status = 'approved'
        ON CONFLICT (span, period, terminal_id, currency, plu, name)
        DO UPDATE SET quantity = it.quantity + EXCLUDED.quantity, revenue = it.revenue + EXCLUDED.revenue;
        RETURN NULL;
    END $$;
    CREATE TRIGGER sale_lines_totals AFTER INSERT ON sale_lines
        FOR EACH ROW EXECUTE FUNCTION office_line_totals();
    """,
    # 3: the method split counts each wallet apart (Alipay, WeChat Pay), as the terminal's own report does:
    # the totals gain the row's provider, counted again from the rows
    """
    ALTER TABLE sale_totals ADD COLUMN provider text NOT NULL DEFAULT '';
    ALTER TABLE sale_totals DROP CONSTRAINT sale_totals_pkey;
    ALTER TABLE sale_totals
        ADD PRIMARY KEY (span, period, terminal_id, currency, kind, status, method, entry_mode, provider, operator);
    CREATE OR REPLACE FUNCTION office_count(t txns, sign integer) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        spans text[] := ARRAY['day', 'month'];
        periods date[] := ARRAY[t.local_day, date_trunc('month', t.local_day)::date];
    BEGIN
        FOR i IN 1..2 LOOP
            INSERT INTO sale_totals AS d (span, period, terminal_id, currency, kind, status, method, entry_mode,
                operator, n, amount, provider)
            VALUES (spans[i], periods[i], t.terminal_id, t.currency, t.kind, t.status, t.method, t.entry_mode,
                t.operator, sign, sign * t.amount, t.provider)
            ON CONFLICT (span, period, terminal_id, currency, kind, status, method, entry_mode, provider, operator)
            DO UPDATE SET n = d.n + EXCLUDED.n, amount = d.amount + EXCLUDED.amount;
            IF t.kind = 'sale' AND t.status = 'approved' THEN
                INSERT INTO hour_totals AS h VALUES (spans[i], periods[i], t.terminal_id, t.currency, t.local_hour,
                    sign, sign * t.amount)
                ON CONFLICT (span, period, terminal_id, currency, local_hour)
                DO UPDATE SET n = h.n + EXCLUDED.n, amount = h.amount + EXCLUDED.amount;
                INSERT INTO item_totals AS it
                    SELECT spans[i], periods[i], t.terminal_id, t.currency, l.plu, l.name, sign * SUM(l.quantity),
                        sign * SUM(l.quantity * l.unit_price)
                    FROM sale_lines l WHERE l.terminal_id = t.terminal_id AND l.transaction_id = t.id
                    GROUP BY l.plu, l.name
                ON CONFLICT (span, period, terminal_id, currency, plu, name)
                DO UPDATE SET quantity = it.quantity + EXCLUDED.quantity, revenue = it.revenue + EXCLUDED.revenue;
            END IF;
        END LOOP;
    END $$;
    CREATE OR REPLACE FUNCTION office_txns_totals() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND (OLD.local_day, OLD.currency, OLD.kind, OLD.status, OLD.method, OLD.entry_mode,
            OLD.provider, OLD.operator, OLD.amount, OLD.local_hour) IS NOT DISTINCT FROM (NEW.local_day,
            NEW.currency, NEW.kind, NEW.status, NEW.method, NEW.entry_mode, NEW.provider, NEW.operator, NEW.amount,
            NEW.local_hour) THEN
            RETURN NULL;
        END IF;
        IF TG_OP <> 'INSERT' THEN PERFORM office_count(OLD, -1); END IF;
        IF TG_OP <> 'DELETE' THEN PERFORM office_count(NEW, 1); END IF;
        RETURN NULL;
    END $$;
    TRUNCATE sale_totals;
    INSERT INTO sale_totals (span, period, terminal_id, currency, kind, status, method, entry_mode, operator, n,
        amount, provider)
        SELECT s.span, CASE s.span WHEN 'day' THEN local_day ELSE date_trunc('month', local_day)::date END AS p,
            terminal_id, currency, kind, status, method, entry_mode, operator, COUNT(*), SUM(amount), provider
        FROM txns, (VALUES ('day'), ('month')) AS s (span)
        GROUP BY s.span, p, terminal_id, currency, kind, status, method, entry_mode, operator, provider;
    """,
    # 4: rows the office will not store are set aside (their reason, never their body) and acknowledged, so the
    # rows after them still arrive; each terminal's last refusal is shown. A terminal's journal has an identity:
    # rows from a replaced journal are refused until the owner takes it, whose rows then go past the old ones'
    # ids, versions and batch numbers (the offsets).
    """
    ALTER TABLE terminals ADD COLUMN journal_id bigint, ADD COLUMN id_offset bigint NOT NULL DEFAULT 0,
        ADD COLUMN seq_offset bigint NOT NULL DEFAULT 0, ADD COLUMN batch_offset integer NOT NULL DEFAULT 0,
        ADD COLUMN last_refusal text NOT NULL DEFAULT '',
        ADD COLUMN last_refusal_at timestamptz;
    CREATE TABLE set_aside_rows (
        terminal_id text NOT NULL REFERENCES terminals,
        seq         bigint NOT NULL,
        entity      text NOT NULL,
        row_id      bigint NOT NULL,
        reason      text NOT NULL,
        at          timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (terminal_id, seq)
    );
    """,
    # 5: WeChat Pay's payment callbacks, checked and decrypted, for the terminals to learn from (a hint only)
    """
    CREATE TABLE wallet_notices (
        provider text NOT NULL,
        out_trade_no text NOT NULL,
        mchid text NOT NULL,
        transaction_id text NOT NULL,
        trade_state text NOT NULL,
        total bigint NOT NULL,
        currency text NOT NULL,
        payer text NOT NULL,
        received_at timestamptz NOT NULL,
        PRIMARY KEY (provider, out_trade_no)
    );
    """,
    # 6: each sale's signature as the terminal kept it (issue 16): a small PNG (png NULL when none was drawn, the note
    # says why), shown with the sale on the owner's page; keyed like the sale, replaced only by a newer version
    """
    CREATE TABLE signatures (
        terminal_id    text NOT NULL REFERENCES terminals,
        transaction_id bigint NOT NULL,
        version        bigint NOT NULL,
        png            bytea CHECK (octet_length(png) <= 65536),
        note           text NOT NULL DEFAULT '',
        created_at     text NOT NULL,
        PRIMARY KEY (terminal_id, transaction_id)
    );
    """,
    # 7: a row set aside can be asked for again (the owner's "retry"; the office kept no body, the terminal's journal
    # has the row): the basket line's number (0 for rows set aside before), who asked and when, when the terminal
    # said its journal does not hold the row, and the version that came after it (stored, or set aside again):
    # a row is still not taken while that is NULL
    """
    ALTER TABLE set_aside_rows ADD COLUMN line_no integer NOT NULL DEFAULT 0,
        ADD COLUMN superseded_seq bigint, ADD COLUMN retry_asked_at timestamptz,
        ADD COLUMN retry_asked_by text NOT NULL DEFAULT '', ADD COLUMN missing_at timestamptz;
    CREATE INDEX set_aside_open ON set_aside_rows (terminal_id, seq) WHERE superseded_seq IS NULL;
    """,
)

# The totals counted again from the rows (after a bulk load made with the triggers off, or to check them).
REBUILD_TOTALS = """
    TRUNCATE sale_totals, hour_totals, item_totals;
    CREATE TEMPORARY VIEW spans AS SELECT * FROM (VALUES ('day'), ('month')) AS s (span);
    INSERT INTO sale_totals (span, period, terminal_id, currency, kind, status, method, entry_mode, operator, n,
        amount, provider)
        SELECT s.span, CASE s.span WHEN 'day' THEN local_day ELSE date_trunc('month', local_day)::date END AS p,
            terminal_id, currency, kind, status, method, entry_mode, operator, COUNT(*), SUM(amount), provider
        FROM txns, spans s
        GROUP BY s.span, p, terminal_id, currency, kind, status, method, entry_mode, operator, provider
        ORDER BY 1, 2, 3;  -- a period's rows together, as a day's are when they are counted as it goes
    INSERT INTO hour_totals
        SELECT s.span, CASE s.span WHEN 'day' THEN local_day ELSE date_trunc('month', local_day)::date END AS p,
            terminal_id, currency, local_hour, COUNT(*), SUM(amount)
        FROM txns, spans s WHERE kind = 'sale' AND status = 'approved'
        GROUP BY s.span, p, terminal_id, currency, local_hour ORDER BY 1, 2, 3;
    INSERT INTO item_totals
        SELECT s.span, CASE s.span WHEN 'day' THEN t.local_day ELSE date_trunc('month', t.local_day)::date END AS p,
            t.terminal_id, t.currency, l.plu, l.name, SUM(l.quantity), SUM(l.quantity * l.unit_price)
        FROM sale_lines l JOIN txns t ON t.terminal_id = l.terminal_id AND t.id = l.transaction_id, spans s
        WHERE t.kind = 'sale' AND t.status = 'approved' GROUP BY s.span, p, t.terminal_id, t.currency, l.plu, l.name
        ORDER BY 1, 2, 3;
    DROP VIEW spans;
    ANALYZE sale_totals; ANALYZE hour_totals; ANALYZE item_totals;
"""

_LOCK = 0x436F756E  # pg_advisory_xact_lock key: one migration at a time, whoever runs it


def migrate(conn: Any) -> int:
    """Bring the database up to date (each migration in its own transaction); the schema version after.
    OfficeError for a database written by a newer back office."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS office_schema (version integer NOT NULL)")
        row = conn.execute("SELECT version FROM office_schema").fetchone()
        if row is None:
            conn.execute("INSERT INTO office_schema VALUES (0)")
    version = 0
    for number, script in enumerate(MIGRATIONS, start=1):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            version = conn.execute("SELECT version FROM office_schema").fetchone()[0]
            if version > len(MIGRATIONS):
                raise OfficeError(f"the database's schema {version} is newer than this back office ({len(MIGRATIONS)})")
            if version >= number:
                continue
            log.info("office: migrating the database to schema %d", number)
            conn.execute(script)
            conn.execute("UPDATE office_schema SET version = %s", (number,))
            version = number
    return version


def rebuild_totals(conn: Any) -> None:
    """Count every total again from the rows, in one transaction."""
    with conn.transaction():
        conn.execute(REBUILD_TOTALS)
