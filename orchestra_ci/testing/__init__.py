"""Reusable test doubles: fake agent CLIs (and, later, fake GitHub services)."""
