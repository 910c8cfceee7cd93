"""Seeding: copy records as of an instant from the backup into another org (a sandbox), with an id map."""

from sf_pipeline.seeding.config import SeedConfig
from sf_pipeline.seeding.errors import SeedConfigError, SeedingError, SeedTargetError
from sf_pipeline.seeding.order import InsertOrder, Reference, insert_order
from sf_pipeline.seeding.seed import ObjectOutcome, SeedResult, check_seed_target, seed_sandbox
from sf_pipeline.seeding.users import match_users

__all__ = [
    "InsertOrder",
    "ObjectOutcome",
    "Reference",
    "SeedConfig",
    "SeedConfigError",
    "SeedResult",
    "SeedTargetError",
    "SeedingError",
    "check_seed_target",
    "insert_order",
    "match_users",
    "seed_sandbox",
]
