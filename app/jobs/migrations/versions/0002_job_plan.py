"""The job's plan, in the plan's text grammar (logpx.plan): one typed column, parsed once per run.

Jobs stored before it keep an empty plan; their estimator names (``iwae:5000``, ``iwae:16@ais:1000``) are
the same grammar, and the runner reads the plan from them.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("plan", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("plan")
