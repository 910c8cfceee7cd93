"""Derive devorg's compact standard-object catalog from jsforce's standard schema (MIT).

Usage: python scripts/build_standard_catalog.py path/to/standard-objects.json   (jsforce's standard schema file)

Writes sf_pipeline/devorg/standard_catalog.json: per object, its fields as [name, type, nullable]
(types: string, number, boolean, datetime, base64, address, location, any) and its parent lookups
(relationship name -> target object, "Name" meaning polymorphic) and child relationships
(relationship name -> child object). jsforce's copyright and license
notice ship beside it (sf_pipeline/devorg/LICENSE-jsforce.txt).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

TYPES = {
    "string": "string",
    "number": "number",
    "boolean": "boolean",
    "DateString": "datetime",
    "BlobString": "base64",
    "Address": "address",
    "Location": "location",
    "any": "any",
}


def main(source: str) -> None:
    src = Path(source)
    data = json.loads(src.read_text())
    out = {"source": data["source"], "objects": {}}
    for name in sorted(data["objects"]):
        obj = data["objects"][name]
        out["objects"][name] = {
            "fields": [[f, TYPES[spec["type"]], spec["nullable"]] for f, spec in sorted(obj["fields"].items())],
            "parents": {rel: p["to"] for rel, p in sorted(obj["parents"].items())},
            "children": dict(sorted(obj.get("children", {}).items())),
        }
    target = Path(__file__).resolve().parent.parent / "sf_pipeline" / "devorg"
    (target / "standard_catalog.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
    shutil.copyfile(src.with_name("LICENSE-jsforce.txt"), target / "LICENSE-jsforce.txt")


if __name__ == "__main__":
    main(sys.argv[1])
