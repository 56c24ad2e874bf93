"""Certifications: searches for a certified AIS setting, kept so that one accepted is never lost. A replica
holds a running one by a lease, as it holds a job; one whose holder stopped is taken up again (by any replica
serving the same checkpoint file) and, its finished trials being certificates already, goes on from them.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certifications",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("checkpoint", sa.String(64), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("chosen", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("expected_s", sa.Float, nullable=True),
        sa.Column("lease_owner", sa.String(32), nullable=True),
        sa.Column("lease_expires", sa.Float, nullable=True),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("finished", sa.Float, nullable=True),
    )
    op.create_index("certifications_checkpoint", "certifications", ["checkpoint"])


def downgrade() -> None:
    op.drop_index("certifications_checkpoint", table_name="certifications")
    op.drop_table("certifications")
