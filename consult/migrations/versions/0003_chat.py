"""Chat: messages, blocked messages, images, the sensitive-word list (issue 6).

Revision ID: 0003_chat
Revises: 0002
Create Date: 2026-11-22 09:30:00

Messages and blocks are the text-and-image dialogue kept for at least 3 years (R23): triggers
refuse UPDATE and DELETE on them (a retraction is a new message), and on PostgreSQL
``teleconsult_app`` gets SELECT and INSERT only on them and on the images; the word list is
kept by operators (SELECT, INSERT, DELETE).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_chat"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "teleconsult_app"
APPEND_ONLY = ("chat_messages", "chat_blocks")


def _sqlite_triggers(table: str) -> list[str]:
    return [
        f"""
        CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
        BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END
        """,
        f"""
        CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
        BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END
        """,
    ]


def _pg_triggers(table: str) -> list[str]:
    return [
        f"""
        CREATE TRIGGER {table}_no_update BEFORE UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION chat_refuse_change()
        """,
        f"""
        CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION chat_refuse_change()
        """,
    ]


_PG_FUNCTION = """
CREATE FUNCTION chat_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the chat record is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$
"""

_PG_GRANTS = f"""
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        GRANT SELECT, INSERT ON chat_images, chat_messages, chat_blocks TO {APP_ROLE};
        GRANT SELECT, INSERT, DELETE ON sensitive_words TO {APP_ROLE};
    END IF;
END
$$
"""


def _id() -> sa.Column:
    return sa.Column("id", sa.String(length=32), nullable=False)


def _at(name: str = "created_at") -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _fk(column: str, table: str, source: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{table}.id"], name=op.f(f"fk_{source}_{column}_{table}")
    )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "chat_images",
        _id(),
        sa.Column("visit_id", sa.String(length=32), nullable=False),
        sa.Column("uploader_id", sa.String(length=32), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data_enc", sa.LargeBinary(), nullable=False),
        sa.Column("thumb_content_type", sa.String(length=32), nullable=False),
        sa.Column("thumb_enc", sa.LargeBinary(), nullable=False),
        _at(),
        _fk("visit_id", "visits", "chat_images"),
        _fk("uploader_id", "users", "chat_images"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_images")),
    )
    op.create_index(op.f("ix_chat_images_visit_id"), "chat_images", ["visit_id"], unique=False)
    op.create_table(
        "chat_messages",
        _id(),
        sa.Column("visit_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.String(length=32), nullable=False),
        sa.Column("sender_role", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text_enc", sa.Text(), nullable=True),
        sa.Column("image_id", sa.String(length=32), nullable=True),
        sa.Column("retracts_id", sa.String(length=32), nullable=True),
        _at(),
        sa.CheckConstraint(
            "kind IN ('text', 'image', 'retraction')", name=op.f("ck_chat_messages_kind_allowed")
        ),
        sa.CheckConstraint("seq > 0", name=op.f("ck_chat_messages_seq_positive")),
        _fk("visit_id", "visits", "chat_messages"),
        _fk("sender_id", "users", "chat_messages"),
        _fk("image_id", "chat_images", "chat_messages"),
        _fk("retracts_id", "chat_messages", "chat_messages"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
        sa.UniqueConstraint("visit_id", "seq", name="uq_chat_messages_visit_id_seq"),
    )
    op.create_table(
        "chat_blocks",
        _id(),
        sa.Column("visit_id", sa.String(length=32), nullable=False),
        sa.Column("sender_id", sa.String(length=32), nullable=False),
        sa.Column("sender_role", sa.String(length=16), nullable=False),
        sa.Column("text_enc", sa.Text(), nullable=False),
        sa.Column("word_ids", sa.Text(), nullable=False),
        _at(),
        _fk("visit_id", "visits", "chat_blocks"),
        _fk("sender_id", "users", "chat_blocks"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_blocks")),
    )
    op.create_index(op.f("ix_chat_blocks_visit_id"), "chat_blocks", ["visit_id"], unique=False)
    op.create_table(
        "sensitive_words",
        _id(),
        sa.Column("word", sa.String(length=64), nullable=False),
        sa.Column("normalized", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        _at(),
        _fk("created_by", "users", "sensitive_words"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sensitive_words")),
        sa.UniqueConstraint("normalized", name=op.f("uq_sensitive_words_normalized")),
    )
    if dialect == "postgresql":
        op.execute(_PG_FUNCTION)
    for table in APPEND_ONLY:
        for statement in _sqlite_triggers(table) if dialect == "sqlite" else _pg_triggers(table):
            op.execute(statement)
    if dialect == "postgresql":
        op.execute(_PG_GRANTS)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS chat_refuse_change()")
    op.drop_table("sensitive_words")
    op.drop_table("chat_blocks")
    op.drop_table("chat_messages")
    op.drop_index(op.f("ix_chat_images_visit_id"), table_name="chat_images")
    op.drop_table("chat_images")
