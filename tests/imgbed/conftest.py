import pytest


@pytest.fixture
def imgbed_bucket(bucket, settings):
    """The image bed stores into a fresh, empty bucket on the real S3 endpoint for this test."""
    settings.IMGBED_BUCKET = bucket
    return bucket


@pytest.fixture
def bucket_keys(s3, imgbed_bucket):
    """A function listing every key in the image bed's bucket."""

    def keys() -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=imgbed_bucket)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    return keys


@pytest.fixture
def authed(api, session_id):
    api.credentials(HTTP_X_SESSION_ID=session_id)
    return api
