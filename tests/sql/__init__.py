"""Statements, schema, migrations and database behaviour (plans, locks, routing)."""
