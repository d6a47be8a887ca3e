"""Statements of the command-line tools (whole-database questions, no tenant yet)."""

# Is this database empty of tenants (a fresh embedded database gets the demo data)?
NO_TENANTS_YET = """
SELECT NOT EXISTS (SELECT 1 FROM tenants)
"""

# Every tenant's id, for the background workers that go through the tenants one by one (each
# of their statements then concerns one tenant, so it runs on one node of a distributed
# database).
ALL_TENANT_IDS = """
SELECT id FROM tenants ORDER BY id
"""
