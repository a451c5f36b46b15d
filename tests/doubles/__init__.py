"""Test doubles: a fake agent CLI, a GitHub REST stand-in and the artifact services.

They live with the tests and do not ship in the package or the image."""
