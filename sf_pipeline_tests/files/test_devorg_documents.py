"""devorg's Documents and Folders as Salesforce has them (Object Reference, "Document" and "Folder"):
FolderId names a Folder (or a user, for the personal folder), not any record; DeveloperName is unique among the
org's documents; Document supports undelete(), Folder does not (it has no recycle bin), and a Folder still
holding documents cannot be deleted (Object Reference, "Folder": its supported calls include delete() but not
undelete(), https://developer.salesforce.com/docs/atlas.en-us.object_reference.meta/object_reference/
sforce_api_objects_folder.htm; "You can only delete a folder which is empty", Salesforce Help on folders as
summarized at sudipta-deb.in/2015/01/admin-notes-what-folder-can-do-in-salesforce.html; devorg answers
DELETE_FAILED, as for any parent whose children restrict its deletion)."""

from __future__ import annotations

import base64

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from sf_pipeline_tests.devorg_fixtures import connect


def test_documents_live_in_folders_with_unique_developer_names_and_folders_have_no_recycle_bin(devorg):
    sf = connect(devorg)
    folder = sf.Folder.create({"Name": "Logos", "DeveloperName": "Logos", "Type": "Document", "AccessType": "Public"})[
        "id"
    ]
    account = sf.Account.create({"Name": "Acme"})["id"]
    body = base64.b64encode(b"png bytes").decode()
    with pytest.raises(SalesforceMalformedRequest, match="FIELD_INTEGRITY_EXCEPTION"):
        sf.Document.create({"FolderId": account, "Name": "x", "Body": body})  # an Account is no folder
    doc = sf.Document.create({"FolderId": folder, "Name": "logo", "DeveloperName": "logo", "Body": body})["id"]
    personal = sf.Document.create(
        {
            "FolderId": sf.query("SELECT Id FROM User LIMIT 1")["records"][0]["Id"],
            "Name": "mine",
            "Url": "https://example.com/mine.pdf",
        }
    )["id"]
    assert sf.Document.get(personal)["DeveloperName"] == "mine"  # defaulted from Name
    with pytest.raises(SalesforceMalformedRequest, match="DUPLICATE_DEVELOPER_NAME"):
        sf.Document.create({"FolderId": folder, "Name": "logo 2", "DeveloperName": "logo", "Body": body})
    with pytest.raises(SalesforceMalformedRequest, match="DELETE_FAILED"):
        sf.Folder.delete(folder)  # it holds a document
    sf.Document.delete(doc)
    assert (
        sf.query_all(f"SELECT IsDeleted FROM Document WHERE Id = '{doc}'", include_deleted=True)["records"][0][
            "IsDeleted"
        ]
        is True
    )  # in the recycle bin
    sf.Folder.delete(folder)
    assert sf.query(f"SELECT Id FROM Folder WHERE Id = '{folder}'")["totalSize"] == 0  # gone at once
