"""GET /api/imgbed/v1/list/<path>: images under a path, from the Image table."""

import pytest

from imgbed.services import image_save_bytes
from tests.imgbed.images import gif, jpeg, png

LIST = "/api/imgbed/v1/list/"


@pytest.fixture
def gallery(imgbed_bucket):
    image_save_bytes(path="peer", filename="b.jpg", data=jpeg(size=(30, 20)), uploader="u")
    image_save_bytes(path="peer", filename="a.png", data=png(size=(10, 5)), uploader="u")
    image_save_bytes(path="peer/sub", filename="c.gif", data=gif(), uploader="u")
    image_save_bytes(path="peerless", filename="d.png", data=png(), uploader="u")


@pytest.mark.django_db
def test_list_answers_the_images_directly_under_a_path(authed, gallery):
    response = authed.get(LIST + "peer")
    assert response.status_code == 200
    body = response.json()
    assert body["ErrorCode"] == 0 and body["Path"] == "peer" and body["Total"] == 2
    assert [i["name"] for i in body["Images"]] == ["a.png", "b.jpg"]
    first = body["Images"][0]
    assert first["path"] == "peer" and first["content_type"] == "image/png"
    assert (first["width"], first["height"]) == (10, 5) and first["size"] == len(png(size=(10, 5)))
    assert first["url"] == "/peer/a.png" and first["etag"].startswith('"')
    assert authed.get(first["url"]).status_code == 200


@pytest.mark.django_db
def test_list_recursive_includes_sub_paths_but_not_siblings(authed, gallery):
    body = authed.get(LIST + "peer?recursive=true").json()
    assert [(i["path"], i["name"]) for i in body["Images"]] == [("peer", "a.png"), ("peer", "b.jpg"), ("peer/sub", "c.gif")]


@pytest.mark.django_db
def test_list_pages_with_limit_and_offset(authed, gallery):
    body = authed.get(LIST + "peer?limit=1&offset=1").json()
    assert body["Total"] == 2 and [i["name"] for i in body["Images"]] == ["b.jpg"]
    bad = authed.get(LIST + "peer?limit=0")
    assert bad.status_code == 400 and bad.json()["ErrorCode"] == 2 and "limit" in bad.json()["ErrorMessage"]


@pytest.mark.django_db
def test_list_of_an_empty_path_is_empty(authed, gallery):
    assert authed.get(LIST + "nobody").json()["Images"] == []


@pytest.mark.django_db
def test_list_needs_a_session_and_a_safe_path(client, authed, gallery):
    refused = client.get(LIST + "peer")
    assert refused.status_code == 401 and refused.json()["ErrorCode"] == 3
    assert authed.get(LIST + "peer/%2E%2E").status_code == 400
    assert authed.get(LIST + "a%5Cb").json()["ErrorCode"] == 2
