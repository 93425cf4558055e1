"""The journal's SQLite schema, as the migrations that build it version by version (PRAGMA user_version says
which have run). A migration is only ever appended: a journal written by older firmware is brought up to
date at open; one written by newer firmware is refused."""


def _count(row: str, sign: str) -> str:
    """The statements that add (sign '1') or take out (sign '-1') the figures of transaction `row` (NEW or OLD).
    Each upsert names its conflict target: SQLite before 3.35 (Debian bullseye has 3.34) requires it."""
    day, hour, month = (
        f"substr({row}.created_at, 1, 10)",
        f"CAST(substr({row}.created_at, 12, 2) AS INTEGER)",
        (f"substr({row}.created_at, 1, 7)"),
    )
    approved_sale = f"{row}.kind = 'sale' AND {row}.status = 'approved'"
    return f"""
        INSERT INTO day_totals VALUES ({day}, {row}.kind, {row}.status, {row}.method, {row}.entry_mode,
            {row}.provider, {row}.operator, {sign}, {sign} * {row}.amount)
        ON CONFLICT (day, kind, status, method, entry_mode, provider, operator)
        DO UPDATE SET n = n + excluded.n, amount = amount + excluded.amount;
        INSERT INTO hour_totals SELECT {day}, {hour}, {sign}, {sign} * {row}.amount WHERE {approved_sale}
        ON CONFLICT (day, hour)
        DO UPDATE SET n = n + excluded.n, amount = amount + excluded.amount;
        INSERT INTO item_totals SELECT {month}, plu, name, {sign} * SUM(quantity), {sign} * SUM(quantity * unit_price)
            FROM sale_lines WHERE transaction_id = {row}.id AND {approved_sale} GROUP BY plu, name
        ON CONFLICT (month, plu, name)
        DO UPDATE SET quantity = quantity + excluded.quantity, revenue = revenue + excluded.revenue;"""


_COUNTED = ("kind", "status", "method", "entry_mode", "provider", "operator", "amount", "created_at")

MIGRATIONS: tuple[str, ...] = (
    # 1: transactions and counters
    """
    CREATE TABLE transactions (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        kind          TEXT NOT NULL,
        method        TEXT NOT NULL,
        entry_mode    TEXT NOT NULL,
        amount        INTEGER NOT NULL CHECK (amount > 0),
        currency      TEXT NOT NULL,
        status        TEXT NOT NULL,
        stan          INTEGER NOT NULL,
        masked_pan    TEXT NOT NULL DEFAULT '',
        response_code TEXT NOT NULL DEFAULT '',
        auth_code     TEXT NOT NULL DEFAULT '',
        rrn           TEXT NOT NULL DEFAULT '',
        note          TEXT NOT NULL DEFAULT '',
        terminal_id   TEXT NOT NULL,
        merchant_id   TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    CREATE INDEX transactions_created ON transactions (created_at);
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    """,
    # 2: reversals: rows linked to their original, the original's field 7, send attempts
    """
    ALTER TABLE transactions ADD COLUMN original_id INTEGER REFERENCES transactions (id);
    ALTER TABLE transactions ADD COLUMN transmitted_at TEXT NOT NULL DEFAULT '';
    ALTER TABLE transactions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX transactions_original ON transactions (original_id);
    CREATE INDEX transactions_queue ON transactions (kind, status);
    """,
    # 3: voids and refunds: batch numbers, idempotency keys, limits enforced by the database itself
    """
    ALTER TABLE transactions ADD COLUMN batch INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE transactions ADD COLUMN idem_key TEXT NOT NULL DEFAULT '';
    CREATE INDEX transactions_stan ON transactions (stan);
    CREATE TRIGGER follow_up_needs_approved_sale BEFORE INSERT ON transactions
    WHEN NEW.kind IN ('void', 'refund') BEGIN
        SELECT RAISE(ABORT, 'the original is not an approved sale') WHERE NOT EXISTS
            (SELECT 1 FROM transactions WHERE id = NEW.original_id AND kind = 'sale' AND status = 'approved');
    END;
    CREATE TRIGGER refund_within_original BEFORE INSERT ON transactions WHEN NEW.kind = 'refund' BEGIN
        SELECT RAISE(ABORT, 'refunds would exceed the original amount') WHERE NEW.amount +
            (SELECT COALESCE(SUM(amount), 0) FROM transactions WHERE original_id = NEW.original_id
             AND kind IN ('refund', 'void') AND status IN ('pending', 'approved', 'unknown'))
            > (SELECT amount FROM transactions WHERE id = NEW.original_id);
    END;
    CREATE TRIGGER void_only_untouched BEFORE INSERT ON transactions WHEN NEW.kind = 'void' BEGIN
        SELECT RAISE(ABORT, 'the sale already has a refund or a void') WHERE EXISTS
            (SELECT 1 FROM transactions WHERE original_id = NEW.original_id AND kind IN ('void', 'refund')
             AND status IN ('pending', 'approved', 'unknown'));
    END;
    CREATE VIEW transaction_summary AS
        SELECT t.*, (SELECT COALESCE(SUM(r.amount), 0) FROM transactions r
                     WHERE r.original_id = t.id AND r.kind = 'refund' AND r.status = 'approved') AS refunded
        FROM transactions t;
    """,
    # 4: wallet payments: provider, the terminal's order number, the provider's trade number, the payer
    """
    ALTER TABLE transactions ADD COLUMN provider TEXT NOT NULL DEFAULT '';
    ALTER TABLE transactions ADD COLUMN order_no TEXT NOT NULL DEFAULT '';
    ALTER TABLE transactions ADD COLUMN wallet_trade_no TEXT NOT NULL DEFAULT '';
    ALTER TABLE transactions ADD COLUMN payer TEXT NOT NULL DEFAULT '';
    CREATE INDEX transactions_order ON transactions (order_no);
    DROP VIEW transaction_summary;
    CREATE VIEW transaction_summary AS
        SELECT t.*, (SELECT COALESCE(SUM(r.amount), 0) FROM transactions r
                     WHERE r.original_id = t.id AND r.kind = 'refund' AND r.status = 'approved') AS refunded
        FROM transactions t;
    """,
    # 5: settlement: one row per settled batch, with both sides' totals
    """
    CREATE INDEX transactions_batch ON transactions (batch);
    CREATE TABLE settlements (
        batch         INTEGER PRIMARY KEY,       -- a batch is settled once
        created_at    TEXT NOT NULL,
        debits        INTEGER NOT NULL, debit_amount  INTEGER NOT NULL,
        credits       INTEGER NOT NULL, credit_amount INTEGER NOT NULL,
        host_debits   INTEGER, host_debit_amount INTEGER, host_credits INTEGER, host_credit_amount INTEGER,
        response_code TEXT NOT NULL,
        in_balance    INTEGER NOT NULL
    );
    """,
    # 6: the audit log: who did what, each entry chained to the one before by its SHA-256
    """
    CREATE TABLE audit (
        id        INTEGER PRIMARY KEY,
        at        TEXT NOT NULL,
        actor     TEXT NOT NULL,
        action    TEXT NOT NULL,
        detail    TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash      TEXT NOT NULL
    );
    """,
    # 7: reports: equality on kind and status, then a range of dates, answered from one index
    """
    CREATE INDEX transactions_report ON transactions (kind, status, created_at);
    """,
    # 8: a keyed token of the card number (HMAC-SHA256 under the terminal's key): the only way a card is
    # recognised across transactions
    """
    ALTER TABLE transactions ADD COLUMN card_token TEXT NOT NULL DEFAULT '';
    CREATE INDEX transactions_token ON transactions (card_token);
    """,
    # 9: the item catalogue, the lines of each sale's basket, and who was signed in at the till
    """
    CREATE TABLE items (
        plu         TEXT PRIMARY KEY CHECK (length(plu) BETWEEN 1 AND 8),
        name        TEXT NOT NULL CHECK (length(name) > 0),
        price       INTEGER NOT NULL CHECK (price > 0),
        tax_rate_bp INTEGER NOT NULL DEFAULT 0 CHECK (tax_rate_bp BETWEEN 0 AND 10000),
        updated_at  TEXT NOT NULL
    );
    CREATE TABLE sale_lines (
        transaction_id INTEGER NOT NULL REFERENCES transactions (id),
        line_no        INTEGER NOT NULL,
        plu            TEXT NOT NULL,
        name           TEXT NOT NULL,
        quantity       INTEGER NOT NULL CHECK (quantity > 0),
        unit_price     INTEGER NOT NULL CHECK (unit_price > 0),
        tax_rate_bp    INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (transaction_id, line_no)
    );
    CREATE INDEX sale_lines_plu ON sale_lines (plu);
    ALTER TABLE transactions ADD COLUMN operator TEXT NOT NULL DEFAULT '';
    ALTER TABLE transactions ADD COLUMN chip_swiped INTEGER NOT NULL DEFAULT 0;
    """,
    # 10: what a receipt prints of a chip (how the cardholder was verified, the application, its
    # cryptogram), and whether the receipt is printed: NULL none wanted, 0 due, 1 printed. A receipt
    # is always printed from its row, so one that a printer without paper could not print, or that a
    # power cut interrupted, prints again from the same data; so does a reprint.
    """
    ALTER TABLE transactions ADD COLUMN cvm TEXT NOT NULL DEFAULT '';
    ALTER TABLE transactions ADD COLUMN aid TEXT NOT NULL DEFAULT '';
    ALTER TABLE transactions ADD COLUMN app_label TEXT NOT NULL DEFAULT '';
    ALTER TABLE transactions ADD COLUMN cryptogram TEXT NOT NULL DEFAULT '';
    ALTER TABLE transactions ADD COLUMN receipt INTEGER;
    CREATE INDEX transactions_receipt_due ON transactions (id) WHERE receipt = 0;
    """,
    # 11: a settlement between its request and its answer: its 0500 (batch, STAN, totals) is kept, and sent
    # again as it was until the host answers; nothing new goes to the host meanwhile (the outbox)
    """
    CREATE TABLE settlement_queue (
        batch         INTEGER PRIMARY KEY,
        stan          INTEGER NOT NULL,
        debits        INTEGER NOT NULL, debit_amount  INTEGER NOT NULL,
        credits       INTEGER NOT NULL, credit_amount INTEGER NOT NULL,
        created_at    TEXT NOT NULL,
        attempts      INTEGER NOT NULL DEFAULT 0,
        note          TEXT NOT NULL DEFAULT ''
    );
    """,
    # 12: the back office's outbox. While forwarding is on (counter 'forwarding' = 1, set at boot from [office]),
    # every new or changed transaction, basket line and settlement leaves a snapshot of itself here, written by
    # these triggers in the same transaction as the change; the forwarder sends them in `seq` order and deletes
    # what the back office acknowledged. `seq` (AUTOINCREMENT: never reused) is the snapshot's version.
    """
    CREATE TABLE forward_queue (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        entity  TEXT NOT NULL CHECK (entity IN ('transaction', 'line', 'settlement')),
        row_id  INTEGER NOT NULL,           -- the transaction's id (a line's: its sale's), a settlement's batch
        line_no INTEGER NOT NULL DEFAULT 0,
        body    TEXT NOT NULL               -- the row as it was at that moment, JSON (masked PAN, card token)
    );
    CREATE VIEW forward_transaction AS SELECT id, json_object(
        'id', id, 'kind', kind, 'method', method, 'entry_mode', entry_mode, 'amount', amount,
        'currency', currency, 'status', status, 'stan', stan, 'masked_pan', masked_pan,
        'response_code', response_code, 'auth_code', auth_code, 'rrn', rrn, 'note', note,
        'terminal_id', terminal_id, 'merchant_id', merchant_id, 'created_at', created_at,
        'updated_at', updated_at, 'original_id', original_id, 'batch', batch, 'provider', provider,
        'order_no', order_no, 'wallet_trade_no', wallet_trade_no, 'payer', payer, 'card_token', card_token,
        'operator', operator, 'chip_swiped', chip_swiped, 'cvm', cvm, 'app_label', app_label) AS body
        FROM transactions;
    CREATE VIEW forward_line AS SELECT transaction_id, line_no, json_object(
        'transaction_id', transaction_id, 'line_no', line_no, 'plu', plu, 'name', name, 'quantity', quantity,
        'unit_price', unit_price, 'tax_rate_bp', tax_rate_bp) AS body
        FROM sale_lines;
    CREATE VIEW forward_settlement AS SELECT batch, json_object(
        'batch', batch, 'created_at', created_at, 'debits', debits, 'debit_amount', debit_amount,
        'credits', credits, 'credit_amount', credit_amount, 'host_debits', host_debits,
        'host_debit_amount', host_debit_amount, 'host_credits', host_credits,
        'host_credit_amount', host_credit_amount, 'response_code', response_code,
        'in_balance', in_balance) AS body
        FROM settlements;
    CREATE TRIGGER forward_new_transaction AFTER INSERT ON transactions
    WHEN (SELECT value FROM counters WHERE name = 'forwarding') = 1 BEGIN
        INSERT INTO forward_queue (entity, row_id, body)
            SELECT 'transaction', id, body FROM forward_transaction WHERE id = NEW.id;
    END;
    CREATE TRIGGER forward_changed_transaction AFTER UPDATE OF status, amount, response_code, auth_code, rrn,
        wallet_trade_no, payer, operator, masked_pan, card_token, order_no ON transactions
    WHEN (SELECT value FROM counters WHERE name = 'forwarding') = 1 AND (
        OLD.status IS NOT NEW.status OR OLD.amount IS NOT NEW.amount OR OLD.response_code IS NOT NEW.response_code
        OR OLD.auth_code IS NOT NEW.auth_code OR OLD.rrn IS NOT NEW.rrn OR OLD.wallet_trade_no IS NOT
        NEW.wallet_trade_no OR OLD.payer IS NOT NEW.payer OR OLD.operator IS NOT NEW.operator OR OLD.masked_pan
        IS NOT NEW.masked_pan OR OLD.card_token IS NOT NEW.card_token OR OLD.order_no IS NOT NEW.order_no) BEGIN
        INSERT INTO forward_queue (entity, row_id, body)
            SELECT 'transaction', id, body FROM forward_transaction WHERE id = NEW.id;
    END;
    CREATE TRIGGER forward_new_line AFTER INSERT ON sale_lines
    WHEN (SELECT value FROM counters WHERE name = 'forwarding') = 1 BEGIN
        INSERT INTO forward_queue (entity, row_id, line_no, body) SELECT 'line', transaction_id, line_no, body
            FROM forward_line WHERE transaction_id = NEW.transaction_id AND line_no = NEW.line_no;
    END;
    CREATE TRIGGER forward_new_settlement AFTER INSERT ON settlements
    WHEN (SELECT value FROM counters WHERE name = 'forwarding') = 1 BEGIN
        INSERT INTO forward_queue (entity, row_id, body)
            SELECT 'settlement', batch, body FROM forward_settlement WHERE batch = NEW.batch;
    END;
    """,
    # 13: what an EMV chip receipt prints of the card's last word: the terminal verification results (TVR) and
    # transaction status information (TSI) as they ended, the final cryptogram's type (TC or AAC) and value,
    # and the issuer script results (5 bytes per script, hex). None of these is card data.
    """
    ALTER TABLE transactions ADD COLUMN tvr TEXT NOT NULL DEFAULT '';
    ALTER TABLE transactions ADD COLUMN tsi TEXT NOT NULL DEFAULT '';
    ALTER TABLE transactions ADD COLUMN final_ac_type TEXT NOT NULL DEFAULT '';
    ALTER TABLE transactions ADD COLUMN final_ac TEXT NOT NULL DEFAULT '';
    ALTER TABLE transactions ADD COLUMN script_results TEXT NOT NULL DEFAULT '';
    """,
    # 14: the cardholder's signature drawn on the touch screen, kept with its sale: a small 1-bit PNG (not card
    # data), printed on the merchant copy; png NULL with a note when none was drawn (cancelled, timed out: the
    # cashier collected it on the paper copy). One per sale.
    """
    CREATE TABLE signatures (
        transaction_id INTEGER PRIMARY KEY REFERENCES transactions (id),
        png            BLOB,
        note           TEXT NOT NULL DEFAULT '',
        created_at     TEXT NOT NULL
    );
    """,
    # 15: report totals kept by triggers in the same transaction as the change, so that a report of whole days reads
    # a few rows per day instead of every transaction: per local day the rows by kind, status, method, entry mode,
    # provider and operator; per day and hour the approved sales; per month the items of approved sales. A row's
    # change takes its old figures out and puts its new ones in; the totals are back-filled from the journal.
    f"""
    CREATE TABLE day_totals (
        day TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, method TEXT NOT NULL,
        entry_mode TEXT NOT NULL, provider TEXT NOT NULL, operator TEXT NOT NULL,
        n INTEGER NOT NULL, amount INTEGER NOT NULL,
        PRIMARY KEY (day, kind, status, method, entry_mode, provider, operator)
    ) WITHOUT ROWID;
    CREATE TABLE hour_totals (
        day TEXT NOT NULL, hour INTEGER NOT NULL, n INTEGER NOT NULL, amount INTEGER NOT NULL,
        PRIMARY KEY (day, hour)
    ) WITHOUT ROWID;
    CREATE TABLE item_totals (
        month TEXT NOT NULL, plu TEXT NOT NULL, name TEXT NOT NULL, quantity INTEGER NOT NULL,
        revenue INTEGER NOT NULL,
        PRIMARY KEY (month, plu, name)
    ) WITHOUT ROWID;
    INSERT INTO day_totals SELECT substr(created_at, 1, 10), kind, status, method, entry_mode, provider, operator,
        COUNT(*), SUM(amount) FROM transactions GROUP BY 1, 2, 3, 4, 5, 6, 7;
    INSERT INTO hour_totals SELECT substr(created_at, 1, 10), CAST(substr(created_at, 12, 2) AS INTEGER), COUNT(*),
        SUM(amount) FROM transactions WHERE kind = 'sale' AND status = 'approved' GROUP BY 1, 2;
    INSERT INTO item_totals SELECT substr(t.created_at, 1, 7), l.plu, l.name, SUM(l.quantity),
        SUM(l.quantity * l.unit_price) FROM sale_lines l JOIN transactions t ON t.id = l.transaction_id
        WHERE t.kind = 'sale' AND t.status = 'approved' GROUP BY 1, 2, 3;
    CREATE TRIGGER totals_new_transaction AFTER INSERT ON transactions BEGIN {_count("NEW", "1")}
    END;
    CREATE TRIGGER totals_changed_transaction AFTER UPDATE OF {", ".join(_COUNTED)} ON transactions
    WHEN {" OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _COUNTED)} BEGIN {_count("OLD", "-1")} {_count("NEW", "1")}
    END;
    CREATE TRIGGER totals_gone_transaction AFTER DELETE ON transactions BEGIN {_count("OLD", "-1")}
    END;
    CREATE TRIGGER totals_new_line AFTER INSERT ON sale_lines BEGIN
        INSERT INTO item_totals SELECT substr(created_at, 1, 7), NEW.plu, NEW.name, NEW.quantity,
            NEW.quantity * NEW.unit_price FROM transactions WHERE id = NEW.transaction_id AND kind = 'sale'
            AND status = 'approved'
        ON CONFLICT (month, plu, name)
        DO UPDATE SET quantity = quantity + excluded.quantity, revenue = revenue + excluded.revenue;
    END;
    """,
    # 16: the signatures go to the back office too, through the same outbox (issue 16: shown in the back office's
    # report of the sale). The queue's CHECK names its entities, so the table is made again with 'signature' among
    # them, rows and its AUTOINCREMENT high water kept (a version is never reused); legacy_alter_table leaves the
    # triggers that name forward_queue as they are. The PNG travels as hex (SQLite has hex(), not base64).
    """
    PRAGMA legacy_alter_table = ON;
    CREATE TABLE forward_queue_new (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        entity  TEXT NOT NULL CHECK (entity IN ('transaction', 'line', 'settlement', 'signature')),
        row_id  INTEGER NOT NULL,           -- the transaction's id (a line's, a signature's: its sale's), a batch
        line_no INTEGER NOT NULL DEFAULT 0,
        body    TEXT NOT NULL               -- the row as it was at that moment, JSON (masked PAN, card token)
    );
    INSERT INTO forward_queue_new SELECT seq, entity, row_id, line_no, body FROM forward_queue;
    DELETE FROM sqlite_sequence WHERE name = 'forward_queue_new';
    UPDATE sqlite_sequence SET name = 'forward_queue_new' WHERE name = 'forward_queue';
    DROP TABLE forward_queue;
    ALTER TABLE forward_queue_new RENAME TO forward_queue;
    PRAGMA legacy_alter_table = OFF;
    CREATE VIEW IF NOT EXISTS forward_signature AS SELECT transaction_id, json_object(
        'transaction_id', transaction_id, 'png_hex', CASE WHEN png IS NULL THEN NULL ELSE hex(png) END,
        'note', note, 'created_at', created_at) AS body
        FROM signatures;
    CREATE TRIGGER IF NOT EXISTS forward_new_signature AFTER INSERT ON signatures
    WHEN (SELECT value FROM counters WHERE name = 'forwarding') = 1 BEGIN
        INSERT INTO forward_queue (entity, row_id, body)
            SELECT 'signature', transaction_id, body FROM forward_signature WHERE transaction_id = NEW.transaction_id;
    END;
    """,  # 17: what a chip sale's reversal must tell the issuer of the card (ISO 8583 field 55 of the 0400): the TVR,
    # the issuer application data, the ATC, the IFD serial and the script results, as BER-TLV hex — as sent
    # online, then as the card ended when it declined after the issuer approved. None of these is card data.
    """
    ALTER TABLE transactions ADD COLUMN reversal_icc TEXT NOT NULL DEFAULT '';
    """,
)
