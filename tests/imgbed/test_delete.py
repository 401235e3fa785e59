"""POST /api/imgbed/v1/delete: the seeds' {"path", "filename"} -> {"errCode", "message"}."""

import pytest

from imgbed.models import Image
from imgbed.services import image_save_bytes
from tests.imgbed.images import png

DELETE = "/api/imgbed/v1/delete"


@pytest.fixture
def stored(imgbed_bucket):
    return image_save_bytes(path="peer/2026", filename="a.png", data=png(), uploader="u")


@pytest.mark.django_db
def test_delete_twice_answers_0_then_1(authed, client, stored, bucket_keys):
    first = authed.post(DELETE, {"path": "peer/2026", "filename": "a.png"}, format="json")
    assert first.status_code == 200
    assert first.json() == {"errCode": 0, "message": "success"}
    assert bucket_keys() == [] and not Image.objects.exists()
    assert client.get("/peer/2026/a.png").status_code == 404

    second = authed.post(DELETE, {"path": "peer/2026", "filename": "a.png"}, format="json")
    assert second.status_code == 404
    assert second.json()["errCode"] == 1 and "no such image" in second.json()["message"]
    assert set(second.json()) == {"errCode", "message"}


@pytest.mark.django_db
def test_delete_only_removes_the_named_image(authed, stored, bucket_keys):
    image_save_bytes(path="peer/2026", filename="b.png", data=png(), uploader="u")
    authed.post(DELETE, {"path": "peer/2026", "filename": "a.png"}, format="json")
    assert bucket_keys() == ["peer/2026/b.png"]
    assert list(Image.objects.values_list("filename", flat=True)) == ["b.png"]


@pytest.mark.django_db
def test_a_leading_slash_in_path_reads_as_relative(authed, stored, bucket_keys):
    # an export's ImagePath is '/<peer>/<file>': its directory part may be sent as is
    response = authed.post(DELETE, {"path": "/peer/2026", "filename": "a.png"}, format="json")
    assert response.json() == {"errCode": 0, "message": "success"}
    assert bucket_keys() == []


@pytest.mark.django_db
def test_session_in_the_body_and_unknown_fields_are_accepted(api, session_id, stored, bucket_keys):
    body = {"path": "peer/2026", "filename": "a.png", "SessionId": session_id, "_ServiceName": "mma", "_Version": 1}
    response = api.post(DELETE, body, format="json")
    assert response.json()["errCode"] == 0
    assert bucket_keys() == []


@pytest.mark.django_db
def test_an_object_without_a_row_is_deleted_too(authed, s3, imgbed_bucket, bucket_keys):
    s3.put_object(Bucket=imgbed_bucket, Key="legacy/old.jpg", Body=b"whatever")
    response = authed.post(DELETE, {"path": "legacy", "filename": "old.jpg"}, format="json")
    assert response.json()["errCode"] == 0
    assert bucket_keys() == []


@pytest.mark.django_db
@pytest.mark.parametrize("headers", [{}, {"HTTP_X_SESSION_ID": "F" * 32}])
def test_delete_without_a_valid_session_is_refused_with_errcode_3(api, stored, bucket_keys, headers):
    response = api.post(DELETE, {"path": "peer/2026", "filename": "a.png"}, format="json", **headers)
    assert response.status_code == 401
    assert response.json()["errCode"] == 3 and set(response.json()) == {"errCode", "message"}
    assert bucket_keys() == ["peer/2026/a.png"] and Image.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"path": "peer/../peer/2026", "filename": "a.png"},
        {"path": "..", "filename": "a.png"},
        {"path": "peer/2026", "filename": ".."},
        {"path": "peer/2026", "filename": "../a.png"},
        {"path": "peer\\2026", "filename": "a.png"},
        {"path": "peer/2026", "filename": "a\\a.png"},
        {"path": "peer/2026", "filename": "a\x00.png"},
        {"path": "peer/2026\x00", "filename": "a.png"},
        {"path": "peer/\x1b2026", "filename": "a.png"},
        {"path": "peer/2026", "filename": "a\n.png"},
        {"path": "//peer/2026", "filename": "a.png"},
        {"path": "peer//2026", "filename": "a.png"},
        {"path": "/", "filename": "a.png"},
        {"path": "peer/2026", "filename": "é" * 128 + ".png"},  # 260 bytes
        {"path": "peer/2026", "filename": "a.txt"},
        {"path": "peer/2026", "filename": ""},
        {"path": "peer/2026"},
        {"filename": "a.png"},
        {"path": ["peer"], "filename": "a.png"},
    ],
)
def test_bad_paths_and_names_answer_errcode_2_and_delete_nothing(authed, stored, bucket_keys, body):
    response = authed.post(DELETE, body, format="json")
    assert response.status_code == 400
    assert response.json()["errCode"] == 2 and set(response.json()) == {"errCode", "message"}
    assert bucket_keys() == ["peer/2026/a.png"] and Image.objects.count() == 1


@pytest.mark.django_db
def test_malformed_json_and_wrong_method_keep_the_shape(authed, stored):
    broken = authed.post(DELETE, "{not json", content_type="application/json")
    assert broken.status_code == 400 and broken.json()["errCode"] == 2
    wrong = authed.get(DELETE)
    assert wrong.status_code == 405 and set(wrong.json()) == {"errCode", "message"}
