"""The service functions other apps call (exports store thumbnails through image_save_bytes)."""

import hashlib

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from imgbed.errors import ImageNotFound, ImagePathInvalid, ImageRejected
from imgbed.models import Image
from imgbed.services import image_delete, image_save_bytes, image_url
from imgbed.storage import imgbed_storage
from resourced.errors import ServiceError
from tests.imgbed.images import jpeg, png, webp


@pytest.mark.django_db
def test_image_save_bytes_stores_the_object_and_the_row(s3, imgbed_bucket, bucket_keys):
    data = jpeg(size=(320, 180), noise=True)
    image = image_save_bytes(path="peer-1", filename="peer-1_rec_1700000000000_5000.jpg", data=data, uploader="export")
    assert isinstance(image, Image) and image.pk
    assert bucket_keys() == ["peer-1/peer-1_rec_1700000000000_5000.jpg"]
    stored = s3.get_object(Bucket=imgbed_bucket, Key=image.key)
    assert stored["Body"].read() == data and stored["ContentType"] == "image/jpeg"
    row = Image.objects.get()
    assert (row.path, row.filename, row.uploader) == ("peer-1", "peer-1_rec_1700000000000_5000.jpg", "export")
    assert (row.width, row.height, row.size) == (320, 180, len(data))
    assert row.sha256 == hashlib.sha256(data).hexdigest() and row.created and row.updated


@pytest.mark.django_db
def test_image_save_bytes_upserts_one_row_per_path_and_name(imgbed_bucket, s3):
    first = image_save_bytes(path="p", filename="t.webp", data=webp(size=(8, 8)), uploader="a")
    second_data = webp(size=(16, 4))
    second = image_save_bytes(path="/p", filename="t.webp", data=second_data, uploader="b")
    assert second.pk == first.pk and Image.objects.count() == 1
    row = Image.objects.get()
    assert (row.width, row.height, row.uploader, row.created) == (16, 4, "b", first.created)
    assert s3.get_object(Bucket=imgbed_bucket, Key="p/t.webp")["Body"].read() == second_data


@pytest.mark.django_db
@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n garbage", b"<svg xmlns='http://www.w3.org/2000/svg'/>"])
def test_image_save_bytes_refuses_non_images(imgbed_bucket, bucket_keys, data):
    with pytest.raises(ImageRejected) as caught:
        image_save_bytes(path="p", filename="x.png", data=data, uploader="u")
    assert isinstance(caught.value, ServiceError) and caught.value.kind == "invalid"
    assert bucket_keys() == [] and not Image.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path,filename",
    [("../up", "x.png"), ("a/..", "x.png"), ("a\\b", "x.png"), ("a\x00", "x.png"), ("a", "x\x07.png"),
     ("//abs", "x.png"), ("a", "sub/x.png"), ("a", "x" * 252 + ".png"), ("a", "x.svg")],
)
def test_image_save_bytes_refuses_unsafe_paths_before_writing(imgbed_bucket, bucket_keys, path, filename):
    with pytest.raises(ImagePathInvalid):
        image_save_bytes(path=path, filename=filename, data=png(), uploader="u")
    assert bucket_keys() == [] and not Image.objects.exists()


@pytest.mark.django_db
def test_image_save_bytes_refuses_over_size(imgbed_bucket, bucket_keys, settings):
    data = png(size=(64, 64), noise=True)
    settings.IMGBED_MAX_BYTES = len(data) - 1
    with pytest.raises(ImageRejected, match="over the limit"):
        image_save_bytes(path="p", filename="x.png", data=data, uploader="u")
    assert bucket_keys() == []


@pytest.mark.django_db
def test_image_delete_removes_object_and_row_then_raises_not_found(imgbed_bucket, bucket_keys):
    image_save_bytes(path="p", filename="x.png", data=png(), uploader="u")
    image_delete(path="p", filename="x.png")
    assert bucket_keys() == [] and not Image.objects.exists()
    with pytest.raises(ImageNotFound):
        image_delete(path="p", filename="x.png")


@pytest.mark.django_db
def test_a_refused_request_costs_no_object_store_call(settings, imgbed_bucket):
    settings.RESOURCED_S3_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens: any S3 call would fail
    with CaptureQueriesContext(connection) as queries, pytest.raises(ImageRejected):
        image_save_bytes(path="p", filename="x.png", data=b"not an image", uploader="u")
    assert len(queries) == 0


def test_image_url_is_the_prefix_path_and_name_with_single_slashes(settings):
    assert image_url(path="peer", filename="a.jpg") == "/peer/a.jpg"
    assert image_url(path="/peer/", filename="a.jpg") == "/peer/a.jpg"
    assert image_url(path="a/b", filename="x y#1.png") == "/a/b/x%20y%231.png"
    settings.IMGBED_URL_PREFIX = "/img/"
    assert image_url(path="peer", filename="a.jpg") == "/img/peer/a.jpg"
    settings.IMGBED_URL_PREFIX = "img"
    assert image_url(path="peer", filename="a.jpg") == "/img/peer/a.jpg"
    settings.IMGBED_URL_PREFIX = "https://cdn.example.com/"
    assert image_url(path="peer", filename="a.jpg") == "https://cdn.example.com/peer/a.jpg"
    with pytest.raises(ImagePathInvalid):
        image_url(path="../x", filename="a.jpg")


def test_the_storage_follows_the_settings_at_use_time(settings):
    from storages.backends.s3 import S3Storage

    settings.IMGBED_BUCKET = "one"
    settings.RESOURCED_S3_ENDPOINT_URL = "http://127.0.0.1:1111"
    first = imgbed_storage()
    assert isinstance(first, S3Storage)
    assert (first.bucket_name, first.endpoint_url, first.addressing_style) == ("one", "http://127.0.0.1:1111", "path")
    assert first.file_overwrite is True and first.default_acl is None
    assert first.access_key == settings.AWS_ACCESS_KEY_ID and first.secret_key == settings.AWS_SECRET_ACCESS_KEY
    assert imgbed_storage() is first  # cached per configuration
    settings.IMGBED_BUCKET = "two"
    settings.RESOURCED_S3_ENDPOINT_URL = "http://127.0.0.1:2222"
    second = imgbed_storage()
    assert (second.bucket_name, second.endpoint_url) == ("two", "http://127.0.0.1:2222")
