"""Certificates: BDMC measurements of AIS settings per checkpoint (its file's sha256), which ``steps: auto``
resolves against and verdicts cite. A changed checkpoint has another hash, so no certificate outlives it.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("checkpoint", sa.String(64), nullable=False),
        sa.Column("setting", sa.String(128), nullable=False),
        sa.Column("certificate", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_index("certificates_checkpoint", "certificates", ["checkpoint"])


def downgrade() -> None:
    op.drop_index("certificates_checkpoint", table_name="certificates")
    op.drop_table("certificates")
