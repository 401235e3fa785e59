"""GET/HEAD <IMGBED_URL_PREFIX><path>/<filename>: streamed bytes, validators, cache headers, access."""

from datetime import timedelta

import pytest
from django.utils.http import http_date

from imgbed.models import Image
from imgbed.services import image_save_bytes, image_url
from tests.imgbed.images import body_of, jpeg, png


@pytest.fixture
def stored(imgbed_bucket):
    data = png(size=(20, 10), noise=True)
    image = image_save_bytes(path="cam/2026", filename="frame.png", data=data, uploader="u")
    return image, data


@pytest.mark.django_db
def test_get_streams_the_bytes_with_validators_and_cache_headers(client, stored, settings):
    image, data = stored
    response = client.get("/cam/2026/frame.png")
    assert response.status_code == 200
    assert response.streaming  # a StreamingHttpResponse over the S3 body
    assert body_of(response) == data
    assert response["Content-Type"] == "image/png"
    assert response["Content-Length"] == str(len(data))
    assert response["ETag"] == image.etag and len(image.sha256) == 64
    assert response["Last-Modified"] == http_date(image.updated.timestamp())
    assert response["Cache-Control"] == f"public, max-age={settings.IMGBED_CACHE_SECONDS}"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_a_large_image_is_streamed_in_chunks_byte_exact(client, imgbed_bucket):
    data = png(size=(1000, 800), noise=True)  # about 2.4 MB of incompressible pixels
    image_save_bytes(path="big", filename="noise.png", data=data, uploader="u")
    response = client.get("/big/noise.png")
    chunks = list(response.streaming_content)
    assert len(chunks) > 1 and max(len(c) for c in chunks) <= 64 * 1024
    assert b"".join(chunks) == data


@pytest.mark.django_db
def test_if_none_match_answers_304(client, stored):
    image, _data = stored
    response = client.get("/cam/2026/frame.png", HTTP_IF_NONE_MATCH=image.etag)
    assert response.status_code == 304 and response.content == b""
    assert response["ETag"] == image.etag
    assert response["Cache-Control"].startswith("public, max-age=")
    other = client.get("/cam/2026/frame.png", HTTP_IF_NONE_MATCH='"something-else"')
    assert other.status_code == 200


@pytest.mark.django_db
def test_if_modified_since_answers_304_unless_modified(client, stored):
    image, data = stored
    later = http_date((image.updated + timedelta(seconds=5)).timestamp())
    assert client.get("/cam/2026/frame.png", HTTP_IF_MODIFIED_SINCE=later).status_code == 304
    same = http_date(image.updated.timestamp())
    assert client.get("/cam/2026/frame.png", HTTP_IF_MODIFIED_SINCE=same).status_code == 304
    earlier = http_date((image.updated - timedelta(days=1)).timestamp())
    response = client.get("/cam/2026/frame.png", HTTP_IF_MODIFIED_SINCE=earlier)
    assert response.status_code == 200 and body_of(response) == data


@pytest.mark.django_db
def test_replacing_an_image_changes_its_etag(client, stored):
    image, _data = stored
    image_save_bytes(path="cam/2026", filename="frame.png", data=png(size=(3, 3)), uploader="u")
    response = client.get("/cam/2026/frame.png", HTTP_IF_NONE_MATCH=image.etag)
    assert response.status_code == 200 and response["ETag"] != image.etag


@pytest.mark.django_db
def test_head_answers_the_headers_without_a_body(client, stored):
    image, data = stored
    response = client.head("/cam/2026/frame.png")
    assert response.status_code == 200
    assert response.content == b""
    assert response["Content-Type"] == "image/png" and response["Content-Length"] == str(len(data))
    assert response["ETag"] == image.etag and "Last-Modified" in response
    assert client.head("/cam/2026/frame.png", HTTP_IF_NONE_MATCH=image.etag).status_code == 304
    assert client.head("/cam/2026/absent.png").status_code == 404


@pytest.mark.django_db
def test_an_absent_image_is_404_json(client, imgbed_bucket):
    response = client.get("/cam/2026/absent.jpg")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["ErrorCode"] == 4 and "absent.jpg" in response.json()["ErrorMessage"]


@pytest.mark.django_db
def test_a_row_whose_object_vanished_is_404_json(client, stored, s3, imgbed_bucket):
    s3.delete_object(Bucket=imgbed_bucket, Key="cam/2026/frame.png")
    response = client.get("/cam/2026/frame.png")
    assert response.status_code == 404 and response.json()["ErrorCode"] == 4


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/a/%2E%2E/b/x.png", "/a%5Cb/x.png", "/a%01b/x.png", "/a/x%00y.png"])
def test_unsafe_read_paths_are_400(client, imgbed_bucket, url):
    response = client.get(url)
    assert response.status_code == 400 and response.json()["ErrorCode"] == 2


@pytest.mark.django_db
def test_the_image_route_does_not_shadow_other_urls(client, stored):
    assert client.get("/healthz").status_code != 404
    assert client.get("/api/schema/").status_code == 200
    unknown = client.get("/cam/2026/frame.txt")  # not an image extension: no image route …
    assert unknown.status_code == 404 and unknown.json()["ErrorCode"] == 4  # … but the image bed's 404
    assert client.get("/frame.png").status_code == 404  # no path: not an image bed URL
    assert client.get("/cam/2026/FRAME.PNG").status_code == 404  # names are case-sensitive …
    image_save_bytes(path="cam", filename="UPPER.JPG", data=jpeg(), uploader="u")
    assert client.get("/cam/UPPER.JPG").status_code == 200  # … extensions are not


@pytest.mark.django_db
def test_an_export_image_path_is_fetchable_at_the_site_root(client, imgbed_bucket):
    data = jpeg(size=(64, 36))
    name = "peer-7_rec-1_1700000000000_5000.jpg"
    image_save_bytes(path="peer-7", filename=name, data=data, uploader="export")
    url = image_url(path="peer-7", filename=name)
    assert url == f"/peer-7/{name}"
    response = client.get(url)
    assert response.status_code == 200 and body_of(response) == data and response["Content-Type"] == "image/jpeg"


@pytest.mark.django_db
def test_private_reads_need_a_session(client, stored, session_id, settings, django_user_model):
    _image, data = stored
    settings.IMGBED_PUBLIC_READ = False
    refused = client.get("/cam/2026/frame.png")
    assert refused.status_code == 401 and refused.json()["ErrorCode"] == 3
    assert client.head("/cam/2026/frame.png").status_code == 401
    assert client.get("/cam/2026/frame.png", HTTP_X_SESSION_ID="0" * 32).status_code == 401

    by_header = client.get("/cam/2026/frame.png", HTTP_X_SESSION_ID=session_id)
    assert by_header.status_code == 200 and body_of(by_header) == data
    assert by_header["Cache-Control"].startswith("private, ")
    by_query = client.get(f"/cam/2026/frame.png?SessionId={session_id}")  # for <img src>
    assert by_query.status_code == 200 and body_of(by_query) == data

    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)  # the admin's thumbnails
    assert client.get("/cam/2026/frame.png").status_code == 200


@pytest.mark.django_db
def test_public_reads_need_no_session(client, stored, settings):
    settings.IMGBED_PUBLIC_READ = True
    assert client.get("/cam/2026/frame.png").status_code == 200
    assert Image.objects.count() == 1


@pytest.mark.django_db
def test_a_failed_if_match_is_412_json(client, stored):
    image, _data = stored
    assert client.get("/cam/2026/frame.png", HTTP_IF_MATCH=image.etag).status_code == 200
    response = client.get("/cam/2026/frame.png", HTTP_IF_MATCH='"other"')
    assert response.status_code == 412 and response.json()["ErrorCode"] == 2


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/cam/2026/frame.txt", "/cam/\x84", "/cam/2026/frame", "/a/b/"])
def test_a_get_of_a_name_that_is_not_an_image_name_answers_the_image_beds_404(client, imgbed_bucket, url):
    """GET and HEAD <path>/<filename> are the image bed's (docs/api.md §2), whatever the name: one
    that no image can have is absent, in the shape of an absent image (ErrorCode 4)."""
    response = client.get(url)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json() == {"ErrorCode": 4, "ErrorMessage": f"{url}: not found"}
    assert client.head(url).status_code == 404


@pytest.mark.django_db
def test_other_unknown_urls_keep_their_own_404(client):
    """Not an image read: another method, no <path>/ before the name, or an API's own prefix."""
    assert client.post("/cam/2026/frame.txt").json() == {"code": 404, "message": "/cam/2026/frame.txt: not found"}
    assert client.get("/frame.txt").json() == {"code": 404, "message": "/frame.txt: not found"}
    assert client.get("/resource/v1/i/restore/a/b").json() == {"code": 404, "message": "/resource/v1/i/restore/a/b: not found"}
    exports = client.get("/resource/v1/i/export-to-s3dir/a/b").json()
    assert exports["ErrorCode"] == -1 and exports["ErrorMessage"] == "/resource/v1/i/export-to-s3dir/a/b: not found"
