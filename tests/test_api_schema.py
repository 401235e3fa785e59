"""The API as /api/docs/ shows it (GET /api/schema/): the session is an Authorize-able apiKey on
every authenticated operation, every request field says what it is, its range and a real value
from the seeds, errors are documented in each endpoint's shape, operationIds are clean; and the
session class behind it answers clients exactly as before."""

import json
import re

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from exports.apis import ExportCreateApi, ThumbnailApi
from restore.apis import RestoreCreateApi
from tests.exports.conftest import export_body

SESSION_SCHEME = {"SessionId": []}
# operations anyone may call: image reads (public unless IMGBED_PUBLIC_READ is false) and the
# signed callback receiver; `/`, /healthz and /metrics are plain Django views, not in the schema
PUBLIC = {"imgbed_image_get", "put_restore_result"}
MAIN = {"export_to_s3dir", "export_to_s3dir_at_root", "getthumbnail", "imgbed_upload", "imgbed_delete",
        "imgbed_list", "restore_create", "put_restore_result"}
ERRORS = {
    "export_to_s3dir": ({400, 401, 413, 429}, {"ErrorCode", "ErrorMessage", "TimeWait", "TaskId", "Stage"}),
    "export_to_s3dir_at_root": ({400, 401, 413, 429}, {"ErrorCode", "ErrorMessage", "TimeWait", "TaskId"}),
    "export_get": ({401, 404}, {"ErrorCode", "ErrorMessage", "TimeWait", "TaskId"}),
    "export_cancel": ({401, 404}, {"ErrorCode", "ErrorMessage", "TimeWait", "TaskId"}),
    "getthumbnail": ({400, 401, 413}, {"ErrorCode", "ErrorMessage", "TimeWait", "ImagePath"}),
    "imgbed_upload": ({400, 401, 413, 415}, {"ErrorCode", "ErrorMessage", "FailedFiles"}),
    "imgbed_delete": ({400, 401, 403, 404, 413}, {"errCode", "message"}),
    "imgbed_list": ({400, 401}, {"ErrorCode", "ErrorMessage"}),
    "imgbed_image_get": ({400, 401, 404}, {"ErrorCode", "ErrorMessage"}),
    "restore_create": ({400, 401, 413}, {"code", "message"}),
    "restore_get": ({401, 404}, {"code", "message"}),
    "put_restore_result": ({400, 401}, {"code", "message"}),
}
REQUIRED = "SessionId: required (in the body or the X-Session-Id header)"
UNKNOWN = "SessionId: unknown or expired"
EXPORT_URL = "/resource/v1/i/export-to-s3dir"


@pytest.fixture(scope="module")
def schema() -> dict:
    answer = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert answer.status_code == 200, answer.content[:300]
    return json.loads(answer.content)


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch", "head"):
                yield path, method, operation


def by_id(schema: dict) -> dict:
    return {operation["operationId"]: operation for _path, _method, operation in operations(schema)}


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node or ("allOf" in node and len(node["allOf"]) == 1 and "type" not in node):
        ref = node["$ref"] if "$ref" in node else node["allOf"][0]["$ref"]
        merged = {k: v for k, v in node.items() if k not in ("$ref", "allOf")}
        node = {**schema["components"]["schemas"][ref.rsplit("/", 1)[-1]], **merged}
    return node


def request_properties(schema: dict, operation: dict) -> dict:
    if "requestBody" not in operation:
        return {}
    content = operation["requestBody"]["content"]
    media = content.get("application/json") or content["multipart/form-data"]
    return {name: resolve(schema, prop) for name, prop in resolve(schema, media["schema"])["properties"].items()}


# --- the session -------------------------------------------------------------------------------


def test_the_session_is_an_api_key_in_the_x_session_id_header(schema):
    scheme = schema["components"]["securitySchemes"]["SessionId"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-Session-Id")
    assert "SessionId" in scheme["description"]


def test_every_operation_but_the_public_ones_requires_the_session(schema):
    ids = set()
    for path, method, operation in operations(schema):
        ids.add(operation["operationId"])
        security = operation.get("security", [])
        if operation["operationId"] in PUBLIC:
            assert {} in security, (path, method, security)  # anonymous is allowed
        else:
            assert security == [SESSION_SCHEME], (path, method, security)
    assert PUBLIC <= ids and MAIN <= ids
    assert "/" not in schema["paths"] and "/healthz" not in schema["paths"]


def test_operation_ids_are_clean_and_unique(schema):
    ids = [operation["operationId"] for _path, _method, operation in operations(schema)]
    assert len(ids) == len(set(ids)), ids
    for operation_id in ids:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", operation_id), operation_id
        assert not operation_id.startswith("resource_v1_"), operation_id  # no path-made ids


# --- request fields ----------------------------------------------------------------------------


def test_every_request_field_has_a_description_and_a_real_example(schema):
    operations_by_id = by_id(schema)
    for operation_id in sorted(MAIN):
        operation = operations_by_id[operation_id]
        for name, prop in request_properties(schema, operation).items():
            where = f"{operation_id}.{name}"
            assert prop.get("description", "").strip(), f"{where}: no description"
            assert "type" in prop or "enum" in prop, f"{where}: no type"
            if prop.get("format") == "binary" or prop.get("items", {}).get("format") == "binary":
                continue  # a file: Swagger shows a file picker
            assert "example" in prop or "default" in prop, f"{where}: no example"
            assert prop.get("example", prop.get("default")) not in ("string", "", None), where
        for parameter in operation.get("parameters", []):
            where = f"{operation_id} parameter {parameter['name']}"
            assert parameter.get("description", "").strip(), where
            assert parameter.get("examples") or "default" in parameter["schema"], where


def test_the_examples_are_the_seeds_values(schema):
    export = request_properties(schema, by_id(schema)["export_to_s3dir"])
    assert export["StartTime"]["example"] == "00:13:12"
    assert export["LivePath"]["example"] == "mp4/55524C2004E/55524C2041268-6bdb82b53e0a/1/stream.mpd"
    assert export["StartPos"]["example"] == 1562253612833 and export["Duration"]["example"] == 9000
    assert export["ServiceCaller"]["example"] == "mma" and export["export_type"]["example"] == 1
    examples = by_id(schema)["export_to_s3dir"]["requestBody"]["content"]["application/json"]["examples"]
    first = next(iter(examples.values()))["value"]  # what "Try it out" starts from
    assert "SessionId" not in first and {"ServiceCaller", "StartPos", "StartTime", "Duration", "LivePath"} <= set(first)
    delete = request_properties(schema, by_id(schema)["imgbed_delete"])
    assert delete["path"]["example"] == "4B999DC458FBC4C80000000000000002"
    assert delete["filename"]["example"].endswith("_1584973791094_7170000.jpg")


@pytest.mark.parametrize("operation_id, serializer", [
    ("export_to_s3dir", ExportCreateApi.InputSerializer),
    ("getthumbnail", ThumbnailApi.InputSerializer),
    ("restore_create", RestoreCreateApi.InputSerializer),
])
def test_the_ranges_the_serializers_enforce_are_in_the_schema(schema, operation_id, serializer):
    properties = request_properties(schema, by_id(schema)[operation_id])
    fields = serializer().fields
    assert set(properties) == set(fields)
    for name, field in fields.items():
        prop = properties[name]
        if getattr(field, "max_length", None):
            assert prop["maxLength"] == field.max_length, name
        if getattr(field, "min_value", None) is not None:
            assert prop["minimum"] == field.min_value, name
        if getattr(field, "max_value", None) is not None:
            assert prop["maximum"] == field.max_value, name
        if hasattr(field, "choices"):
            assert sorted(map(str, prop["enum"])) == sorted(map(str, field.choices)), name
    if operation_id == "export_to_s3dir":
        assert properties["Duration"]["maximum"] == settings.EXPORT_MAX_DURATION_MS
    if operation_id == "restore_create":
        assert (properties["days"]["minimum"], properties["days"]["maximum"]) == (1, settings.RESTORE_MAX_DAYS)
        assert properties["tier"]["enum"] and properties["files"]["type"] == "array"


# --- errors ------------------------------------------------------------------------------------


def test_error_answers_are_documented_in_each_endpoints_shape(schema):
    operations_by_id = by_id(schema)
    assert set(ERRORS) == set(operations_by_id)
    for operation_id, (statuses, keys) in ERRORS.items():
        responses = operations_by_id[operation_id]["responses"]
        for status in statuses:
            response = responses.get(str(status))
            assert response and response["description"], f"{operation_id} {status}"
            media = response["content"]["application/json"]
            shape = set(resolve(schema, media["schema"])["properties"])
            assert keys <= shape, (operation_id, status, shape)
            for example in media.get("examples", {}).values():
                assert keys <= set(example["value"]), (operation_id, status, example)


# --- the session over HTTP ---------------------------------------------------------------------


@pytest.fixture
def no_enqueue(monkeypatch):
    monkeypatch.setattr("exports.services.export_enqueue", lambda *, export: None)


def _export_401(message: str) -> dict:
    return {"ErrorCode": -3, "ErrorMessage": message, "TimeWait": 0, "ImagePath": "", "VideoPath": "",
            "Version": "v1", "S3Dir": "export", "LackLength": 0, "TaskId": "", "Progress": 0, "Stage": "",
            "ClipStart": 0, "ClipDuration": 0}


NO_SESSION = [  # method, url, body, the 401 body clients have always had
    ("post", EXPORT_URL, export_body("mp4/P/r/1/stream.mpd", None), _export_401(REQUIRED)),
    ("post", "/export-to-s3dir", export_body("mp4/P/r/1/stream.mpd", None), _export_401(REQUIRED)),
    ("get", f"{EXPORT_URL}/0123456789abcdef0123456789abcdef", None, _export_401(REQUIRED)),
    ("delete", f"{EXPORT_URL}/0123456789abcdef0123456789abcdef", None, _export_401(REQUIRED)),
    ("post", "/resource/v1/i/getthumbnail", {"StartPos": 1, "StartTime": "1", "LivePath": "a/b/c/s.mpd"},
     {"ErrorCode": -3, "ErrorMessage": REQUIRED, "TimeWait": 0, "ImagePath": ""}),
    ("post", "/api/imgbed/v1/delete", {"path": "a", "filename": "b.jpg"}, {"errCode": 3, "message": REQUIRED}),
    ("get", "/api/imgbed/v1/list/a", None, {"ErrorCode": 3, "ErrorMessage": REQUIRED}),
    ("post", "/resource/v1/i/restore", {"files": ["a/b.ts"], "file_dir": "x", "callback_url": "https://c.example/"},
     {"code": 401, "message": REQUIRED}),
    ("get", "/resource/v1/i/restore/job-1", None, {"code": 401, "message": REQUIRED}),
]


def _call(client, method, url, body, **headers):
    if body is None:
        return getattr(client, method)(url, **headers)
    return getattr(client, method)(url, json.dumps(body), content_type="application/json", **headers)


@pytest.mark.django_db
@pytest.mark.parametrize("method, url, body, expected", NO_SESSION, ids=[f"{m} {u}" for m, u, _b, _e in NO_SESSION])
def test_without_a_session_the_401_body_is_the_same_as_before(client, method, url, body, expected):
    answer = _call(client, method, url, body)
    assert answer.status_code == 401
    assert answer.json() == expected
    assert answer["WWW-Authenticate"] == 'SessionId header="X-Session-Id"'
    bad = _call(client, method, url, body, HTTP_X_SESSION_ID="0" * 32)
    assert bad.status_code == 401
    assert bad.json() == {**expected, next(k for k in expected if "essage" in k): UNKNOWN}


@pytest.mark.django_db
def test_a_method_an_endpoint_lacks_is_still_405_without_a_session(client):
    for method, url in (("get", EXPORT_URL), ("get", "/api/imgbed/v1/delete"), ("put", "/resource/v1/i/restore")):
        answer = getattr(client, method)(url)
        assert answer.status_code == 405, (method, url, answer.content)
        assert answer.json()[next(k for k in answer.json() if "essage" in k)].startswith(f'Method "{method.upper()}"')


@pytest.mark.django_db
def test_an_upload_without_a_session_is_the_same_401(client):
    answer = client.post("/api/imgbed/v1/upload/a", {"f": SimpleUploadedFile("a.png", b"\x89PNG")})
    assert answer.status_code == 401
    assert answer.json() == {"ErrorCode": 3, "ErrorMessage": REQUIRED, "FailedFiles": [], "Failures": []}


@pytest.mark.django_db
def test_the_documented_401_is_the_real_one(client, schema):
    documented = by_id(schema)["export_to_s3dir"]["responses"]["401"]["content"]["application/json"]["examples"]
    answer = _call(client, "post", EXPORT_URL, export_body("mp4/P/r/1/stream.mpd", None))
    assert answer.json() in [example["value"] for example in documented.values()]


@pytest.mark.django_db
def test_the_x_session_id_header_alone_authenticates(client, session_id, no_enqueue):
    body = export_body("mp4/P/r/1/stream.mpd", None)
    assert "SessionId" not in body
    answer = _call(client, "post", EXPORT_URL, body, HTTP_X_SESSION_ID=session_id)
    assert answer.status_code == 200 and answer.json()["ErrorCode"] == 1, answer.json()
    task_id = answer.json()["TaskId"]
    polled = client.get(f"{EXPORT_URL}/{task_id}", HTTP_X_SESSION_ID=session_id)
    assert polled.status_code == 200 and polled.json()["TaskId"] == task_id
    listed = client.get("/api/imgbed/v1/list/a", HTTP_X_SESSION_ID=session_id)
    assert listed.status_code == 200 and listed.json()["ErrorCode"] == 0


@pytest.mark.django_db
def test_the_body_session_still_authenticates_and_the_header_wins(client, session_id, no_enqueue):
    in_body = _call(client, "post", EXPORT_URL, export_body("mp4/P/r/1/stream.mpd", session_id))
    assert in_body.status_code == 200 and in_body.json()["ErrorCode"] == 1
    # what /api/docs/ sends once authorized, with the seeds' example SessionId in the body
    seeds_body = export_body("mp4/P/r/2/stream.mpd", "2A39603DDB0F47CFB32E96C8366084AE")
    authorized = _call(client, "post", EXPORT_URL, seeds_body, HTTP_X_SESSION_ID=session_id)
    assert authorized.status_code == 200 and authorized.json()["ErrorCode"] == 1, authorized.json()


def test_the_schema_and_the_docs_page_need_no_session():
    client = Client()
    for url in ("/api/schema/", "/api/docs/"):
        assert client.get(url).status_code == 200
        assert client.get(url, HTTP_X_SESSION_ID="not-a-session").status_code == 200
