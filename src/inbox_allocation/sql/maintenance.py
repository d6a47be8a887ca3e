"""Statements of the command-line tools (whole-database questions, no tenant yet)."""

# Is this database empty of tenants (a fresh embedded database gets the demo data)?
NO_TENANTS_YET = """
SELECT NOT EXISTS (SELECT 1 FROM tenants)
"""
