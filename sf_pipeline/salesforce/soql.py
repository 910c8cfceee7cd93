"""Names and ids checked before they go into SOQL (or a REST URL): nothing from describe, the settings or the
backup database reaches a query unless it is a Salesforce API name or record id.

Field and object names come from describe and the settings, record ids from the backup database: all text
someone else wrote. A value that fails here is refused with `UnsafeSoqlValue` instead of being pasted into a
query where a quote, a space or a comma would change its meaning.

The rules, from Salesforce's documentation:
- API names ("Custom Field Attributes", https://help.salesforce.com/s/articleView?id=sf.custom_field_attributes.htm,
  and "Object Reference: Custom Objects",
  https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/sforce_api_objects_custom_objects.htm):
  a name begins with a letter and holds only letters, digits and underscores; it cannot end with an underscore
  or contain two consecutive underscores. Custom names add double-underscore parts: a namespace prefix before
  (`ns__Field__c`) and a suffix after (`__c`, `__r`, `__mdt`, `__e`, `__x`, `__b`, `__kav`, `__pc`, and the
  geolocation components `Location__latitude__s`). So: parts of that form joined by `__`.
- Record ids (SOAP API Developer Guide, "Field Types", ID:
  https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/field_types.htm): 15 case-sensitive or 18
  case-insensitive alphanumeric characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import UnsafeSoqlValue

_PART = r"[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*"
_API_NAME = re.compile(rf"{_PART}(?:__{_PART}){{0,3}}")
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
MAX_NAME_LENGTH = 255


def api_name(name: object, what: str = "field") -> str:
    """`name` if it is a Salesforce API name (object or field), else `UnsafeSoqlValue`."""
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _API_NAME.fullmatch(name):
        raise UnsafeSoqlValue(
            f"{what} name {name!r} is not a Salesforce API name (a letter, then letters, digits "
            "and single underscores, with `__` only before a suffix such as __c): refusing to "
            "put it into a query"
        )
    return name


def field_names(names: Iterable[object]) -> list[str]:
    """API names, each checked, duplicates dropped, order kept."""
    return list(dict.fromkeys(api_name(name) for name in names))


def record_id(value: object) -> str:
    """`value` if it is a 15- or 18-character Salesforce record id, else `UnsafeSoqlValue`."""
    if not isinstance(value, str) or not _RECORD_ID.fullmatch(value):
        raise UnsafeSoqlValue(
            f"{value!r} is not a Salesforce record id (15 or 18 letters and digits): refusing to put it into a query"
        )
    return value


def is_record_id(value: object) -> bool:
    return isinstance(value, str) and _RECORD_ID.fullmatch(value) is not None


def record_ids(values: Iterable[object]) -> list[str]:
    """Record ids, each checked, order kept."""
    return [record_id(v) for v in values]


def id_list(ids: Iterable[object]) -> str:
    """`'id1', 'id2'` for `WHERE Id IN (...)`, every id checked."""
    return ", ".join(f"'{record_id(v)}'" for v in ids)
