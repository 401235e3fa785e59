"""POST /api/imgbed/v1/upload/<path> against the real S3 endpoint."""

import hashlib

import pytest

from imgbed.models import Image
from tests.imgbed.images import body_of, gif, jpeg, make_image, png, upload_file, webp

UPLOAD = "/api/imgbed/v1/upload/"


@pytest.mark.django_db
def test_png_and_jpeg_round_trip_byte_exact(authed, s3, imgbed_bucket, bucket_keys):
    png_bytes = png(size=(33, 17), noise=True)
    jpeg_bytes = jpeg(size=(64, 48), noise=True)
    response = authed.post(
        UPLOAD + "peer1/day1",
        {"first": upload_file("a.png", png_bytes, "text/plain"), "other": upload_file("b.jpg", jpeg_bytes)},
        format="multipart",
    )
    assert response.status_code == 200, response.content
    assert response.json()["ErrorCode"] == 0 and response.json()["FailedFiles"] == []
    assert bucket_keys() == ["peer1/day1/a.png", "peer1/day1/b.jpg"]

    for name, data, content_type, size in (
        ("a.png", png_bytes, "image/png", (33, 17)),
        ("b.jpg", jpeg_bytes, "image/jpeg", (64, 48)),
    ):
        got = authed.get(f"/peer1/day1/{name}")
        assert got.status_code == 200
        assert got["Content-Type"] == content_type  # from the content, not the client's claim
        assert body_of(got) == data
        stored = s3.get_object(Bucket=imgbed_bucket, Key=f"peer1/day1/{name}")
        assert stored["Body"].read() == data and stored["ContentType"] == content_type
        row = Image.objects.get(path="peer1/day1", filename=name)
        assert (row.width, row.height) == size
        assert row.size == len(data) and row.sha256 == hashlib.sha256(data).hexdigest()
        assert row.content_type == content_type and row.uploader == "tester@example.com"


@pytest.mark.django_db
def test_gif_and_webp_are_accepted_and_several_files_in_one_field(authed, bucket_keys):
    response = authed.post(
        UPLOAD + "p", {"files": [upload_file("x.gif", gif()), upload_file("y.webp", webp())]}, format="multipart"
    )
    assert response.json() == {"ErrorCode": 0, "ErrorMessage": "success", "FailedFiles": [], "Failures": []}
    assert bucket_keys() == ["p/x.gif", "p/y.webp"]
    assert dict(Image.objects.values_list("filename", "content_type")) == {"x.gif": "image/gif", "y.webp": "image/webp"}


@pytest.mark.django_db
def test_session_in_the_form_field_is_accepted(api, session_id, bucket_keys):
    response = api.post(UPLOAD + "p", {"SessionId": session_id, "f": upload_file("a.png", png())}, format="multipart")
    assert response.status_code == 200 and response.json()["ErrorCode"] == 0
    assert bucket_keys() == ["p/a.png"]


@pytest.mark.django_db
def test_type_is_decided_by_content_not_extension(authed):
    authed.post(UPLOAD + "p", {"f": upload_file("really-a-png.jpg", png())}, format="multipart")
    assert authed.get("/p/really-a-png.jpg")["Content-Type"] == "image/png"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name,data",
    [
        ("notes.png", b"hello, this is text and not an image\n" * 10),
        ("empty.jpg", b""),
        ("script.gif", b"GIF89a<script>alert(1)</script>"),
        ("broken.png", png(noise=True, size=(50, 50))[:-40] + b"\x00" * 40),  # damaged chunk / CRC
        ("bitmap.png", make_image("BMP")),
        ("tiff.webp", make_image("TIFF")),
    ],
)
def test_non_images_with_image_extensions_are_refused(authed, bucket_keys, name, data):
    response = authed.post(UPLOAD + "p", {"f": upload_file(name, data, "image/png")}, format="multipart")
    assert response.status_code == 200
    body = response.json()
    assert body["ErrorCode"] == 1 and body["FailedFiles"] == [name]
    assert body["Failures"][0]["name"] == name and body["Failures"][0]["reason"]
    assert bucket_keys() == []
    assert not Image.objects.exists()


@pytest.mark.django_db
def test_mixed_request_stores_the_good_file_and_names_the_bad_one(authed, bucket_keys):
    good = png()
    response = authed.post(
        UPLOAD + "mixed",
        {"a": upload_file("good.png", good), "b": upload_file("bad.jpg", b"not a jpeg at all")},
        format="multipart",
    )
    assert response.json()["ErrorCode"] == 1 and response.json()["FailedFiles"] == ["bad.jpg"]
    assert bucket_keys() == ["mixed/good.png"]
    assert list(Image.objects.values_list("filename", flat=True)) == ["good.png"]
    assert body_of(authed.get("/mixed/good.png")) == good


@pytest.mark.django_db
def test_over_size_files_are_refused(authed, bucket_keys, settings):
    small, large = png(size=(8, 8)), png(size=(400, 400), noise=True)
    settings.IMGBED_MAX_BYTES = len(small) + 10
    assert len(large) > settings.IMGBED_MAX_BYTES
    response = authed.post(
        UPLOAD + "p", {"a": upload_file("small.png", small), "b": upload_file("large.png", large)}, format="multipart"
    )
    assert response.json()["FailedFiles"] == ["large.png"]
    assert "over the limit" in response.json()["Failures"][0]["reason"]
    assert bucket_keys() == ["p/small.png"]


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["photo.txt", "photo", "photo.png.exe", "a\u202egnp.exe"])
def test_file_names_without_an_image_extension_are_refused(authed, bucket_keys, name):
    response = authed.post(UPLOAD + "p", {"f": upload_file(name, png())}, format="multipart")
    assert response.json()["ErrorCode"] == 1 and len(response.json()["FailedFiles"]) == 1
    assert bucket_keys() == []


@pytest.mark.django_db
def test_reupload_replaces_the_image_and_keeps_one_row(authed, bucket_keys):
    first, second = png(color=(1, 2, 3)), png(color=(250, 250, 0), size=(10, 10))
    authed.post(UPLOAD + "p", {"f": upload_file("a.png", first)}, format="multipart")
    authed.post(UPLOAD + "p", {"f": upload_file("a.png", second)}, format="multipart")
    assert Image.objects.count() == 1 and Image.objects.get().width == 10
    assert body_of(authed.get("/p/a.png")) == second
    assert bucket_keys() == ["p/a.png"]


@pytest.mark.django_db
@pytest.mark.parametrize("headers", [{}, {"HTTP_X_SESSION_ID": "0" * 32}])
def test_upload_without_a_valid_session_is_401_and_writes_nothing(api, bucket_keys, headers):
    response = api.post(UPLOAD + "p", {"f": upload_file("a.png", png())}, format="multipart", **headers)
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["ErrorCode"] == 3 and "SessionId" in body["ErrorMessage"] and body["FailedFiles"] == []
    assert bucket_keys() == [] and not Image.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url_path",
    [
        "a/%2E%2E/b",          # '..' component
        "%2E%2E",
        "../escape",
        "a/./b",
        "a%5Cb",               # backslash
        "a%00b",               # NUL
        "a%01b",               # control characters
        "a%0Ab",
        "a%7Fb",
        "//etc",               # absolute ('//' after the single leading slash)
        "a//b",                # empty component
        "x" * 256,             # component over 255 bytes
        "/".join(["y" * 200] * 6),  # path over 1024 bytes
    ],
)
def test_bad_paths_are_400_and_nothing_is_written(authed, bucket_keys, url_path):
    response = authed.post(UPLOAD + url_path, {"f": upload_file("a.png", png())}, format="multipart")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["ErrorCode"] == 2 and body["ErrorMessage"].startswith("path")
    assert bucket_keys() == [] and not Image.objects.exists()


@pytest.mark.django_db
def test_a_request_without_files_is_400(authed):
    response = authed.post(UPLOAD + "p", {"note": "nothing"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["ErrorCode"] == 2 and "no files" in response.json()["ErrorMessage"]


@pytest.mark.django_db
def test_a_json_body_is_refused_as_json(authed):
    response = authed.post(UPLOAD + "p", {"f": "x"}, format="json")
    assert response.status_code == 415 and response.json()["ErrorCode"] == 2
