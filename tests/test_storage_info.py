"""storage_info: base64 JSON list of storages → the S3 location for a purpose, or a 400 that says why."""

import base64
import json

import pytest

from resourced.errors import InvalidInput
from resourced.storage_info import encode_storage_info, parse_storage_info, storage_entries

SEEDS_EXAMPLE = [
    {"storage_purpose": "ts", "storage_type": "S3", "storage_enable": True, "storage_name": "mma-video-archive",
     "storage_location": "us-west-1", "storage_description": "", "storage_root_folder": ""},
    {"storage_purpose": "mp4", "storage_type": "S3", "storage_enable": True, "storage_name": "mma-video-mp4",
     "storage_location": "us-west-2", "storage_description": "", "storage_root_folder": "/root/folder/"},
]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_the_seeds_example_selects_the_entry_of_the_purpose():
    value = encode_storage_info(SEEDS_EXAMPLE)
    ts = parse_storage_info(value, purpose="ts")
    assert (ts.bucket, ts.region, ts.prefix) == ("mma-video-archive", "us-west-1", "")
    mp4 = parse_storage_info(value, purpose="mp4")
    assert (mp4.bucket, mp4.region, mp4.prefix) == ("mma-video-mp4", "us-west-2", "root/folder")
    assert mp4.key("mp4/peer/rec/1/stream.mpd") == "root/folder/mp4/peer/rec/1/stream.mpd"


def test_the_seeds_fragment_and_an_object_wrapper_are_accepted():
    fragment = '"storage_info" : ' + json.dumps(SEEDS_EXAMPLE)
    assert parse_storage_info(b64(fragment), purpose="ts").bucket == "mma-video-archive"
    wrapped = json.dumps({"storage_info": SEEDS_EXAMPLE})
    assert parse_storage_info(b64(wrapped), purpose="mp4").bucket == "mma-video-mp4"


def test_urlsafe_base64_without_padding_and_with_line_breaks_is_accepted():
    raw = json.dumps(SEEDS_EXAMPLE).encode()
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert parse_storage_info(urlsafe, purpose="ts").bucket == "mma-video-archive"
    wrapped = base64.encodebytes(raw).decode()  # a newline every 76 characters
    assert parse_storage_info(wrapped, purpose="ts").bucket == "mma-video-archive"


def test_disabled_and_non_s3_entries_are_skipped():
    storages = [
        dict(SEEDS_EXAMPLE[0], storage_enable=False, storage_name="disabled-bucket"),
        dict(SEEDS_EXAMPLE[0], storage_type="NAS", storage_name="nas-bucket"),
        dict(SEEDS_EXAMPLE[0], storage_name="usable-bucket"),
    ]
    assert parse_storage_info(encode_storage_info(storages), purpose="ts").bucket == "usable-bucket"


def test_restore_falls_back_to_the_first_enabled_s3_entry():
    value = encode_storage_info(SEEDS_EXAMPLE)
    assert parse_storage_info(value, purpose="archive", fallback=True).bucket == "mma-video-archive"
    archive = encode_storage_info(SEEDS_EXAMPLE + [dict(SEEDS_EXAMPLE[0], storage_purpose="archive", storage_name="cold")])
    assert parse_storage_info(archive, purpose="archive", fallback=True).bucket == "cold"


@pytest.mark.parametrize(
    "value, message",
    [
        ("%%%not base64%%%", "storage_info: not base64"),
        ("", "storage_info: not base64"),
        (b64("this is not json"), "storage_info: not JSON"),
        (base64.b64encode(b"\xff\xfe\x00garbage").decode(), "storage_info: not JSON"),
        (b64('{"storage_purpose": "ts"}'), "storage_info: not a list of storage objects"),
        (b64("[]"), "storage_info: not a list of storage objects"),
        (b64('["ts"]'), "storage_info: not a list of storage objects"),
        (b64('[{"storage_purpose": 5}]'), "storage_info: not a list of storage objects"),
        (encode_storage_info(SEEDS_EXAMPLE), "storage_info: no enabled S3 entry for purpose 'flv'"),
    ],
)
def test_each_kind_of_bad_value_is_named(value, message):
    with pytest.raises(InvalidInput) as caught:
        parse_storage_info(value, purpose="flv")
    assert caught.value.message.startswith(message), caught.value.message
    assert caught.value.status == 400


def test_no_usable_entry_at_all_is_refused_even_with_fallback():
    value = encode_storage_info([dict(SEEDS_EXAMPLE[0], storage_enable=False)])
    with pytest.raises(InvalidInput, match="storage_info: no enabled S3 entry"):
        parse_storage_info(value, purpose="archive", fallback=True)


@pytest.mark.parametrize(
    "entry, what",
    [
        ({"storage_name": ""}, "storage_name (the bucket) is empty"),
        ({"storage_name": "bad/bucket"}, "is not a bucket name"),
        ({"storage_location": "us west"}, "is not a region name"),
        ({"storage_root_folder": "a/../b"}, "is not a safe relative path"),
    ],
)
def test_an_unusable_selected_entry_is_refused(entry, what):
    value = encode_storage_info([dict(SEEDS_EXAMPLE[0], **entry)])
    with pytest.raises(InvalidInput) as caught:
        parse_storage_info(value, purpose="ts")
    assert caught.value.message.startswith("storage_info: entry 0: ") and what in caught.value.message


def test_entries_keep_their_position_and_flags():
    entries = storage_entries(encode_storage_info(SEEDS_EXAMPLE))
    assert [(e.index, e.purpose, e.usable) for e in entries] == [(0, "ts", True), (1, "mp4", True)]
