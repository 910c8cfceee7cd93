"""Seeding's errors: each names what to fix."""


class SeedingError(RuntimeError):
    """Seeding cannot go on (e.g. a reference cycle with no field that can be left empty)."""


class SeedConfigError(SeedingError, ValueError):
    """The seed_sandbox config is invalid: the message names the key and what is expected."""
