"""SOAP partner calls that make records vanish: `emptyRecycleBin` and `merge` (request and response shapes of the
partner WSDL: `<emptyRecycleBin><ids>…</ids>…`, `<merge><request><masterRecord>…</masterRecord>
<recordToMergeIds>…</recordToMergeIds></request>…`, results as `<result>` elements with `errors`, `id`,
`success`, and for merge `mergedRecordIds` and `updatedRelatedIds`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import Element

from .context import run_in_thread, soap_fault, soap_ok, xml_text
from .errors import SalesforceError
from .merge import MAX_REQUESTS, merge

if TYPE_CHECKING:
    from starlette.responses import Response

    from .server import DevOrgApp

_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def _local(el: Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


def _errors_xml(errors: list[dict[str, Any]]) -> str:
    return "".join(
        f"<errors><message>{xml_text(e['message'])}</message><statusCode>{e['statusCode']}</statusCode></errors>"
        for e in errors
    )


async def handle_soap_dml(app: DevOrgApp, op: str, call: Element, user_id: str) -> Response:
    try:
        app.org.count_request()
    except SalesforceError as err:
        return soap_fault(err.error_code, err.message)
    try:
        if op == "emptyRecycleBin":
            inner = await run_in_thread(_empty_recycle_bin, app, call)
        else:
            inner = await run_in_thread(_merge_call, app, call, user_id)
    except SalesforceError as err:
        return soap_fault(err.error_code, err.message)
    return soap_ok(inner, app._limit_header())


def _empty_recycle_bin(app: DevOrgApp, call: Element) -> str:
    record_ids = [(el.text or "").strip() for el in call if _local(el) == "ids"]
    store = app.org.store
    with store.lock, store.transaction():
        results = store.bin.empty(record_ids)
    out = []
    for r in results:
        out.append(
            f"<result>{_errors_xml(r['errors'])}<id>{r['id']}</id>"
            f"<success>{'true' if r['success'] else 'false'}</success></result>"
        )
    return "<emptyRecycleBinResponse>" + "".join(out) + "</emptyRecycleBinResponse>"


def _merge_call(app: DevOrgApp, call: Element, user_id: str) -> str:
    requests = [el for el in call if _local(el) == "request"]
    if len(requests) > MAX_REQUESTS:
        raise SalesforceError("LIMIT_EXCEEDED", f"Up to {MAX_REQUESTS} merge requests can be made in a single call")
    out = []
    for req in requests:
        master = next((el for el in req if _local(el) == "masterRecord"), None)
        loser_ids = [(el.text or "").strip() for el in req if _local(el) == "recordToMergeIds"]
        if master is None:
            raise SalesforceError("INVALID_SOAP_HEADER", "merge request without masterRecord")
        type_name = master.get(_XSI_TYPE, "").rsplit(":", 1)[-1]
        master_id = ""
        values: dict[str, Any] = {}
        for el in master:
            name = _local(el)
            if name == "type":
                type_name = (el.text or "").strip()
            elif name == "Id":
                master_id = (el.text or "").strip()
            elif name == "fieldsToNull":
                values[(el.text or "").strip()] = None
            else:
                values[name] = None if el.get(_XSI_NIL) == "true" else (el.text or "")
        result = merge(app.org.store, type_name, master_id, loser_ids, values, user_id)
        if result.success:
            out.append(
                f"<result><id>{result.master_id}</id>"
                + "".join(f"<mergedRecordIds>{m}</mergedRecordIds>" for m in result.merged)
                + "<success>true</success>"
                + "".join(f"<updatedRelatedIds>{u}</updatedRelatedIds>" for u in result.updated_related)
                + "</result>"
            )
        else:
            err = result.error
            out.append(
                f'<result>{_errors_xml([err.to_save_error()])}<id xsi:nil="true"/><success>false</success></result>'
            )
    return "<mergeResponse>" + "".join(out) + "</mergeResponse>"
