"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 18:27:27.145461+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "equipment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=120), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("seed_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("slug <> 'not_equipment'", name=op.f("ck_equipment_slug_not_reserved")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equipment")),
        sa.UniqueConstraint("slug", name=op.f("uq_equipment_slug")),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_promoted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("version", name=op.f("uq_model_versions_version")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("language_code", sa.String(length=16), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("telegram_id", name=op.f("uq_users_telegram_id")),
    )
    op.create_table(
        "model_promotions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("promoted_by_telegram_id", sa.BigInteger(), nullable=True),
        sa.Column("previous_version", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_model_promotions_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_promotions")),
    )
    with op.batch_alter_table("model_promotions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_model_promotions_model_version_id"), ["model_version_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_model_promotions_promoted_at"), ["promoted_at"], unique=False)

    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("reply_message_id", sa.BigInteger(), nullable=True),
        sa.Column("media_group_id", sa.String(length=64), nullable=True),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.Column("image_path", sa.String(length=500), nullable=False),
        sa.Column("model_version", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("top_k", sa.JSON(), nullable=False),
        sa.Column("feedback", sa.String(length=16), nullable=True),
        sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "decision IN ('confident', 'unsure', 'not_equipment')", name=op.f("ck_predictions_decision")
        ),
        sa.CheckConstraint(
            "feedback IS NULL OR feedback IN ('confirmed', 'corrected')", name=op.f("ck_predictions_feedback")
        ),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1", name=op.f("ck_predictions_confidence_range")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_predictions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
    )
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_predictions_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_predictions_image_sha256"), ["image_sha256"], unique=False)
        batch_op.create_index(batch_op.f("ix_predictions_label"), ["label"], unique=False)
        batch_op.create_index(batch_op.f("ix_predictions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "tutorials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("youtube_id", sa.String(length=11), nullable=False),
        sa.Column("equipment_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=True),
        sa.Column("channel", sa.String(length=200), nullable=True),
        sa.Column("presenter", sa.String(length=200), nullable=True),
        sa.Column("curator_note", sa.Text(), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column("thumbnail_url", sa.String(length=500), nullable=True),
        sa.Column("women_led", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_detail", sa.String(length=300), nullable=True),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("added_by_telegram_id", sa.BigInteger(), nullable=True),
        sa.Column("found_in", sa.Text(), nullable=True),
        sa.Column("source_confidence", sa.String(length=16), nullable=True),
        sa.Column("seed_hash", sa.String(length=64), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_by_telegram_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("source IN ('seed', 'admin')", name=op.f("ck_tutorials_source")),
        sa.CheckConstraint(
            "status IN ('unverified', 'available', 'unavailable')", name=op.f("ck_tutorials_status")
        ),
        sa.ForeignKeyConstraint(
            ["equipment_id"],
            ["equipment.id"],
            name=op.f("fk_tutorials_equipment_id_equipment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tutorials")),
        sa.UniqueConstraint("youtube_id", name=op.f("uq_tutorials_youtube_id")),
    )
    with op.batch_alter_table("tutorials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tutorials_equipment_id"), ["equipment_id"], unique=False)

    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("review_state", sa.String(length=16), nullable=False),
        sa.Column("approval_source", sa.String(length=16), nullable=True),
        sa.Column("reviewed_by_telegram_id", sa.BigInteger(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("trained_in_version_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "approval_source IS NULL OR approval_source IN ('admin', 'review', 'agreement')",
            name=op.f("ck_corrections_approval_source"),
        ),
        sa.CheckConstraint(
            "review_state IN ('pending', 'approved', 'rejected')", name=op.f("ck_corrections_review_state")
        ),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_corrections_prediction_id_predictions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["trained_in_version_id"],
            ["model_versions.id"],
            name=op.f("fk_corrections_trained_in_version_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_corrections_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corrections")),
        sa.UniqueConstraint("prediction_id", name=op.f("uq_corrections_prediction_id")),
    )
    with op.batch_alter_table("corrections", schema=None) as batch_op:
        batch_op.create_index("ix_corrections_label_state", ["label", "review_state"], unique=False)
        batch_op.create_index(batch_op.f("ix_corrections_review_state"), ["review_state"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_corrections_trained_in_version_id"), ["trained_in_version_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_corrections_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("corrections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_corrections_user_id"))
        batch_op.drop_index(batch_op.f("ix_corrections_trained_in_version_id"))
        batch_op.drop_index(batch_op.f("ix_corrections_review_state"))
        batch_op.drop_index("ix_corrections_label_state")

    op.drop_table("corrections")
    with op.batch_alter_table("tutorials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tutorials_equipment_id"))

    op.drop_table("tutorials")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_predictions_user_id"))
        batch_op.drop_index(batch_op.f("ix_predictions_label"))
        batch_op.drop_index(batch_op.f("ix_predictions_image_sha256"))
        batch_op.drop_index(batch_op.f("ix_predictions_created_at"))

    op.drop_table("predictions")
    with op.batch_alter_table("model_promotions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_promotions_promoted_at"))
        batch_op.drop_index(batch_op.f("ix_model_promotions_model_version_id"))

    op.drop_table("model_promotions")
    op.drop_table("users")
    op.drop_table("model_versions")
    op.drop_table("equipment")
