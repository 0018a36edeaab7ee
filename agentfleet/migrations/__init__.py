"""Alembic migrations of the agentfleet schema; ``agentfleet.db.upgrade_database`` applies them."""
