"""Seeding's errors: each names what to fix."""


class SeedingError(RuntimeError):
    """Seeding cannot go on (e.g. a reference cycle with no field that can be left empty)."""


class SeedConfigError(SeedingError, ValueError):
    """The seed_sandbox config is invalid: the message names the key and what is expected."""


class SeedTargetError(SeedingError):
    """The target org is not one seeding may write to (the backed-up org, or not a sandbox); nothing was written."""
