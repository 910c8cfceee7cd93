"""What the contracts (launchpad configs, the settings file) share: a frozen pydantic model that refuses unknown keys,
and the one sentence a user reads when a value is wrong.

Validators raise the package's own error (a ValueError: RestoreConfigError, SeedConfigError, SettingsError) with
a message that names the key and the problem; pydantic collects it, and `problem` gives it back unchanged. A
mistake pydantic finds itself (a wrong type) reads `<key>: <pydantic's words>`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class Contract(BaseModel):
    """A contract's model: frozen, strict about unknown keys, enums stored as themselves."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


def problem(exc: ValidationError) -> str:
    """The first mistake `exc` reports, as one sentence."""
    error = exc.errors()[0]
    raised = (error.get("ctx") or {}).get("error")
    if isinstance(raised, ValueError):  # our own validator's message
        return str(raised)
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]
