"""The bytes of each job's result rows, kept as rows are committed: the store's size limit counts them, and
deleting a job gives them back.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("result_bytes", sa.BigInteger, nullable=False, server_default="0"))
    # Jobs stored before: their rows' bytes, counted once now.
    op.execute(
        "UPDATE jobs SET result_bytes = COALESCE((SELECT SUM(LENGTH(results.row)) FROM results "
        "WHERE results.job_id = jobs.id), 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("result_bytes")
