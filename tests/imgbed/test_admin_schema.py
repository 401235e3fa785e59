"""The admin shows images with a thumbnail; the schema documents the endpoints."""

import pytest

from imgbed.models import Image
from imgbed.services import image_save_bytes
from tests.imgbed.images import png


@pytest.mark.django_db
def test_admin_lists_images_with_a_thumbnail_and_deletes_through_the_service(admin_client, imgbed_bucket, bucket_keys):
    image = image_save_bytes(path="peer", filename="a b.png", data=png(), uploader="u")
    listing = admin_client.get("/admin/imgbed/image/")
    assert listing.status_code == 200
    assert b'<img src="/peer/a%20b.png"' in listing.content
    detail = admin_client.get(f"/admin/imgbed/image/{image.pk}/change/")
    assert detail.status_code == 200 and b'src="/peer/a%20b.png"' in detail.content
    assert admin_client.get("/peer/a%20b.png").status_code == 200  # the thumbnail's URL works

    deleted = admin_client.post(f"/admin/imgbed/image/{image.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert not Image.objects.exists() and bucket_keys() == []


def test_schema_documents_the_image_bed(client):
    schema = client.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    upload = paths["/api/imgbed/v1/upload/{path}"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert "application/json" in paths["/api/imgbed/v1/delete"]["post"]["requestBody"]["content"]
    assert "get" in paths["/api/imgbed/v1/list/{path}"]
    image = paths["/{path}/{filename}"]["get"]
    assert {"200", "304", "404"} <= set(image["responses"])
