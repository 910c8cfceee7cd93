"""A launchpad config (`dg.Config`) derived from a contract's pydantic model, so each contract is written once.

The model (in its Dagster-free package: restore/config.py, seeding/config.py) holds each key's type, default,
description and choices; the launchpad shows the same keys in the types Dagster's config system knows:
an instant as its ISO text, a tuple as a list, an Enum as its choices. The model still reads what is launched
(`from_dict`), with its own error messages; keys the model fills in when reading (`exclude=True`) are not
launchpad keys.
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

import dagster as dg
from pydantic import BaseModel, Field, create_model


def launchpad_type(annotation: Any) -> Any:
    """The type Dagster's config shows for a model's field type."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return launchpad_type(args[0])
    if origin in (typing.Union, types.UnionType):
        inner = [launchpad_type(a) for a in args if a is not type(None)]
        optional = type(None) in args
        out = inner[0] if len(inner) == 1 else typing.Union[tuple(inner)]  # noqa: UP007 - built at run time
        return out | None if optional else out
    if origin is tuple:  # tuple[X, ...] or a fixed tuple such as [start, end]
        items = {launchpad_type(a) for a in args if a is not Ellipsis}
        if len(items) != 1:
            raise TypeError(f"a launchpad list holds one type, not {annotation!r}")
        return list[items.pop()]
    if origin is frozenset:
        return list[launchpad_type(args[0])]
    if annotation is datetime:
        return str
    if isinstance(annotation, type) and issubclass(annotation, Enum | str | int | float | bool):
        return annotation
    raise TypeError(f"no launchpad type for {annotation!r}")


def launchpad_default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | frozenset) else value


def launchpad_config(model: type[BaseModel], name: str, *, optional: typing.Collection[str] = ()) -> type[dg.Config]:
    """A `dg.Config` named `name` with `model`'s launchpad keys: same names, defaults, descriptions and choices.

    `optional`: keys the model requires but a launch may leave out because reading fills them in (e.g. the
    restore's `object`, which `incident: <id>` gives); they default to None in the launchpad.
    """
    fields: dict[str, Any] = {}
    for key, info in model.model_fields.items():
        if info.exclude:
            continue
        annotation = launchpad_type(info.annotation)
        if info.is_required() and key not in optional:
            fields[key] = (annotation, Field(description=info.description))
        elif info.is_required():
            fields[key] = (annotation | None, Field(default=None, description=info.description))
        else:
            fields[key] = (annotation, Field(default=launchpad_default(info.default), description=info.description))
    return create_model(name, __base__=dg.Config, __doc__=model.__doc__, __module__=model.__module__, **fields)
