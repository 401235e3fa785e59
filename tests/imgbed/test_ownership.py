"""An image belongs to the user who stored it (docs/api.md §2): another user's session can neither
replace nor delete it; an export's thumbnail belongs to the export's user."""

import pytest
from rest_framework.test import APIClient

from imgbed.models import Image
from imgbed.services import image_save_bytes
from resourced.sessions import session_create
from tests.imgbed.images import png

UPLOAD = "/api/imgbed/v1/upload/"
DELETE = "/api/imgbed/v1/delete"
pytestmark = pytest.mark.django_db


def client_of(user: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_SESSION_ID=session_create(userid=user, ttl_seconds=3600)[1])
    return client


def upload(client: APIClient, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(UPLOAD + "cam/2026", {"f": SimpleUploadedFile("a.png", data, "image/png")}, format="multipart")


def test_another_user_neither_replaces_nor_deletes_an_image(imgbed_bucket, s3, bucket_keys):
    alice, bob = client_of("alice@example.com"), client_of("bob@example.com")
    mine = png(size=(10, 10))
    first = upload(alice, mine).json()
    assert first["ErrorCode"] == 0 and first["FailedFiles"] == []

    replaced = upload(bob, png(size=(20, 20)))
    assert replaced.status_code == 200
    assert replaced.json()["ErrorCode"] == 1 and replaced.json()["FailedFiles"] == ["a.png"]
    assert "another user's image" in str(replaced.json()["Failures"])
    deleted = bob.post(DELETE, {"path": "cam/2026", "filename": "a.png"}, format="json")
    assert deleted.status_code == 403
    assert deleted.json()["errCode"] == 3 and "not allowed" in deleted.json()["message"]

    assert s3.get_object(Bucket=imgbed_bucket, Key="cam/2026/a.png")["Body"].read() == mine
    assert Image.objects.get().owner == "alice@example.com"
    assert upload(alice, png(size=(12, 12))).json()["ErrorCode"] == 0  # the owner replaces it
    assert alice.post(DELETE, {"path": "cam/2026", "filename": "a.png"}, format="json").json()["errCode"] == 0
    assert bucket_keys() == []


def test_an_image_without_an_owner_stays_anyones(imgbed_bucket):
    image_save_bytes(path="cam/2026", filename="a.png", data=png(), uploader="before-owners")
    assert client_of("carol@example.com").post(DELETE, {"path": "cam/2026", "filename": "a.png"},
                                               format="json").json()["errCode"] == 0
