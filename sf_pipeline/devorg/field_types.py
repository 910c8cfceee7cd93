"""Changing a custom field's type at run time, as an admin does in Setup (Edit > Change Field Type).

Rules from Salesforce Help, "Considerations for Converting the Field Type of a Custom Field"
(help.salesforce.com/s/articleView?id=platform.notes_on_changing_custom_field_types.htm):

- Only custom fields can change type; formula (calculated), encrypted and geolocation fields cannot,
  and no field can become one of those.
- Data is lost when changing to or from Date or Date/Time; to Number, Percent or Currency from any other
  type; from Checkbox to any other type; from or to Picklist (Multi-Select) (a picklist becoming a
  multi-select picklist keeps the values in its definition and drops the others); from Text to Picklist;
  from Text Area (Long) to any type except Email, Phone, Text, Text Area or URL. "Field data is lost and is
  set to null in records" for such incompatible conversions (Change Data Capture Developer Guide,
  "Conversions That Generate a Change Event", which names Date <-> Date/Time among them).
- Other conversions keep the data: numbers and picklist values become their text, text moves between
  the text-like types (cut to the new length), a lookup becomes the text of the record Id it held (the
  relationship itself is gone: no `referenceTo`, no relationship name).

Not emulated (refused with a message): conversions to Checkbox, Lookup or Master-Detail, Auto Number,
formula, encrypted or geolocation. UNVERIFIED details: the exact text a number becomes (devorg writes it
with the field's scale, `12.50`), the length of a lookup's Id kept as text (devorg keeps the 18-character
Id the API shows), and whether converted records' SystemModstamp moves (devorg leaves it: the conversion
is a metadata change, like a formula's, and touches no timestamp).

The change is persisted in the org's metadata (`field_type_changes`) and re-applied when the org reopens.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .schema import _CUSTOM_TYPE_DEFAULTS, FieldDef, ObjectDef
from .store import q

if TYPE_CHECKING:
    from .org import Org

TEXT_LIKE = {"string", "textarea", "email", "phone", "url"}
NUMBERS = {"double", "currency", "percent"}
DATES = {"date", "datetime"}
TARGETS = TEXT_LIKE | NUMBERS | DATES | {"picklist", "multipicklist"}
LONG_TEXT = 255  # a textarea longer than this is a Text Area (Long)


class FieldTypeChangeError(ValueError):
    """Salesforce does not allow this change (or devorg does not emulate it); the message says which."""


def _loses_data(old: FieldDef, new_type: str) -> bool:
    """Whether Salesforce documents this conversion as one where the field's data is lost."""
    if old.type in DATES or new_type in DATES:
        return True
    if new_type in NUMBERS:
        return True
    if old.type == "boolean" or old.type == "multipicklist":
        return True
    if new_type == "multipicklist":
        return old.type != "picklist"  # picklist -> multi-select keeps the defined values
    if old.type in TEXT_LIKE and new_type == "picklist":
        return True
    if old.type == "textarea" and old.length > LONG_TEXT and new_type not in TEXT_LIKE:
        return True
    return False


def _as_text(old: FieldDef, value: Any, length: int) -> Any:
    if value is None:
        return None
    if old.type in NUMBERS:
        text = f"{float(value):.{old.scale}f}"
    else:
        text = str(value)
    return text[:length]


def new_field(
    old: FieldDef,
    new_type: str,
    *,
    length: int | None = None,
    precision: int | None = None,
    scale: int | None = None,
    values: list[str] | None = None,
) -> FieldDef:
    """The field as it is after the change: new type and its size, no relationship unless a lookup stays one."""
    if not old.custom:
        raise FieldTypeChangeError(f"{old.name} is a standard field: only custom fields can change type")
    if old.calculated:
        raise FieldTypeChangeError(f"{old.name} is a formula field: its type cannot be changed")
    if old.type in ("address", "location", "encryptedstring"):
        raise FieldTypeChangeError(f"{old.name} is a {old.type} field: its type cannot be changed")
    if new_type not in TARGETS:
        raise FieldTypeChangeError(
            f"devorg does not emulate changing a field to type {new_type!r}; it emulates {', '.join(sorted(TARGETS))}"
        )
    if new_type == old.type and length is None and precision is None and scale is None:
        raise FieldTypeChangeError(f"{old.name} already is of type {new_type}")
    defaults = dict(_CUSTOM_TYPE_DEFAULTS.get(new_type, {}))
    size = {
        "length": length if length is not None else (defaults.get("length", 0)),
        "precision": precision if precision is not None else defaults.get("precision", 0),
        "scale": scale if scale is not None else defaults.get("scale", 0),
    }
    if new_type in TEXT_LIKE | {"picklist", "multipicklist"}:
        size["precision"] = size["scale"] = 0
        if new_type == "string" and not 1 <= size["length"] <= 255:
            raise FieldTypeChangeError(f"a Text field is 1 to 255 characters long, not {size['length']}")
    else:
        size["length"] = 0
    picklist = (
        tuple(values) if values is not None else (old.picklist if new_type in ("picklist", "multipicklist") else ())
    )
    return dataclasses.replace(
        old,
        type=new_type,
        reference_to=(),
        relationship_name=None,
        cascade_delete=False,
        picklist=picklist,
        restricted_picklist=False,
        external_id=old.external_id and new_type in ("string", "double", "email"),
        nillable=True if old.type == "boolean" else old.nillable,
        defaulted_on_create=False,
        **size,
    )


def convert(old: FieldDef, new: FieldDef, value: Any) -> Any:
    """A stored value of `old` as Salesforce keeps it under `new` (None where the data is lost)."""
    if value is None:
        return None
    if old.type == "picklist" and new.type == "multipicklist":
        return value if value in new.picklist else None
    if _loses_data(old, new.type):
        return None
    if new.type in TEXT_LIKE or new.type == "picklist":
        return _as_text(old, value, new.length)
    return value


def _replace_field(obj: ObjectDef, old: FieldDef, new: FieldDef) -> None:
    obj.fields[obj.fields.index(old)] = new
    obj.by_lower[new.lower] = new
    if old.relationship_name:
        obj.by_relationship.pop(old.relationship_name.lower(), None)
    if new.relationship_name:
        obj.by_relationship[new.relationship_name.lower()] = new


def _rewrite_column(org: Org, obj: ObjectDef, old: FieldDef, new: FieldDef) -> dict[str, int]:
    """Give the column its new SQLite type and the converted values (SQLite types columns at creation)."""
    conn, table, col = org.store.conn, q(obj.name), q(old.name)
    tmp = q(old.name + "__devorg_new")
    kept = cleared = 0
    with org.store.transaction():
        for (index,) in conn.execute("SELECT name FROM pragma_index_list(?)", (obj.name,)).fetchall():
            cols = [r[0] for r in conn.execute("SELECT name FROM pragma_index_info(?)", (index,))]
            if [c.lower() for c in cols] == [old.lower]:
                conn.execute(f"DROP INDEX {q(index)}")
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {tmp} {new.sqlite_type}")
        rows = conn.execute(f"SELECT rowid, {col} FROM {table} WHERE {col} IS NOT NULL").fetchall()
        updates = []
        for rowid, value in rows:
            converted = convert(old, new, value)
            if converted is None:
                cleared += 1
            else:
                kept += 1
                updates.append((converted, rowid))
        conn.executemany(f"UPDATE {table} SET {tmp} = ? WHERE rowid = ?", updates)
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {col}")
        conn.execute(f"ALTER TABLE {table} RENAME COLUMN {tmp} TO {col}")
    return {"kept": kept, "cleared": cleared}


def change_field_type(
    org: Org,
    object_name: str,
    field_name: str,
    new_type: str,
    *,
    length: int | None = None,
    precision: int | None = None,
    scale: int | None = None,
    values: list[str] | None = None,
) -> dict[str, Any]:
    """Change `object_name.field_name` to `new_type` in describe and in the stored data; returns what became
    of the data (`kept`, `cleared` record counts)."""
    obj = org.schema.get(object_name)
    old = obj.field(field_name)
    new = new_field(old, new_type, length=length, precision=precision, scale=scale, values=values)
    with org.store.lock:
        counts = _rewrite_column(org, obj, old, new)
        _replace_field(obj, old, new)
        changes = org.store.get_meta("field_type_changes") or []
        org.store.set_meta(
            "field_type_changes",
            [
                *changes,
                {
                    "object": obj.name,
                    "field": old.name,
                    "type": new_type,
                    "length": length,
                    "precision": precision,
                    "scale": scale,
                    "values": values,
                },
            ],
        )
    return {"object": obj.name, "field": old.name, "from": old.type, "to": new.type, **counts}


def restore_field_type_changes(org: Org) -> None:
    """Re-apply recorded type changes to the metadata of a reopened org (its data was converted already)."""
    for change in org.store.get_meta("field_type_changes") or []:
        obj = org.schema.get(change["object"])
        old = obj.field(change["field"])
        new = new_field(
            old,
            change["type"],
            length=change.get("length"),
            precision=change.get("precision"),
            scale=change.get("scale"),
            values=change.get("values"),
        )
        _replace_field(obj, old, new)
