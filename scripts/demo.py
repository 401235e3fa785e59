"""`make demo`, beside a running `make run`: one export from end to end, as a client sees it.

Generates a 30 s DASH recording (every second stamped in the picture), uploads it to the source
bucket of the local S3 endpoint, issues a session, posts export-to-s3dir, polls until the clip is
ready, and prints where the clip and its thumbnail are: the clip as a presigned GET of the export
bucket (an object of a private bucket answers 403 to an unsigned GET), the thumbnail at the image bed.

RESOURCED_API (http://127.0.0.1:8000) and RESOURCED_S3_ENDPOINT_URL (http://127.0.0.1:9000) say where
`make run` listens; EXPORT_DEFAULT_BUCKET (export) is the bucket its clips go to.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import requests
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests import mediagen  # noqa: E402  (the suite's generator of recognisable recordings)

API = os.environ.get("RESOURCED_API", "http://127.0.0.1:8000")
S3 = os.environ.get("RESOURCED_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
EXPORT_BUCKET = os.environ.get("EXPORT_DEFAULT_BUCKET", "export")
CLIP_URL_SECONDS = 3600


def main() -> int:
    s3 = boto3.client("s3", endpoint_url=S3, aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "resourced"),
                      aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "resourced-secret"),
                      region_name="us-east-1",
                      # presigned URLs in SigV4, which AWS, MinIO and moto all accept
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    prefix = "mp4/DEMOPEER/demo-recording/1"
    with tempfile.TemporaryDirectory() as tmp:
        manifest = mediagen.make_dash(tmp, duration_s=30, width=640, height=360)
        for path in Path(tmp).rglob("*"):
            if path.is_file():
                s3.upload_file(str(path), "recordings", f"{prefix}/{path.relative_to(tmp).as_posix()}")
    session = subprocess.run([sys.executable, "manage.py", "createsession", "--user", "demo@example.com"],
                             cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    origin_ms = int(mediagen.DEFAULT_ORIGIN.timestamp() * 1000)
    request = {"ServiceCaller": "mma", "StartPos": origin_ms + 10_000, "StartTime": "00:00:10", "Duration": 8000,
               "LivePath": f"{prefix}/{Path(manifest).name}", "SessionId": session, "export_type": 1,
               "FileName": "demo-clip"}
    print("POST /resource/v1/i/export-to-s3dir", json.dumps({**request, "SessionId": "…"}))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answer = requests.post(f"{API}/resource/v1/i/export-to-s3dir", json=request, timeout=10).json()
        print(f"  ErrorCode {answer['ErrorCode']} {answer['Stage']} {answer['Progress']}%")
        if answer["ErrorCode"] != 1:
            break
        time.sleep(answer["TimeWait"] / 1000)
    print(json.dumps(answer, indent=2))
    if answer["ErrorCode"] != 5:
        return 1
    key = answer["VideoPath"].lstrip("/")  # VideoPath is the key in the destination bucket, with a leading /
    url = s3.generate_presigned_url("get_object", Params={"Bucket": EXPORT_BUCKET, "Key": key},
                                    ExpiresIn=CLIP_URL_SECONDS)
    print(f"clip:      s3://{EXPORT_BUCKET}/{key}")
    print(f"clip URL (a presigned GET, valid {CLIP_URL_SECONDS // 3600} h): {url}")
    print(f"thumbnail: {API}{answer['ImagePath']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
