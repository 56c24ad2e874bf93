"""Comparisons: the jobs that score several models on the same data set with the same plan belong to one
comparison (its id on each), which reports the models side by side and their paired differences.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("comparison", sa.String(32), nullable=True))
        batch.create_index("jobs_comparison", ["comparison"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("jobs_comparison")
        batch.drop_column("comparison")
