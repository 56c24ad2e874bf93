"""Alembic migrations of the job store; run at start-up by ``store.migrate`` (docs/jobs.md)."""
