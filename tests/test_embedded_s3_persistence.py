"""The embedded S3 endpoint of `make run` keeps its objects across restarts under <VAR_DIR>/s3.

The server is started with the command line scripts/devserver.py uses (resourced.embedded_s3's
server_argv) on a fresh var dir, filled through boto3 as the service fills it, stopped as Ctrl-C
stops it (SIGINT) or killed (SIGKILL once the snapshot delay has passed), and started again on the
same var dir: every object is read back, with its bytes, metadata and storage class.
"""

import hashlib
import os
import signal
import subprocess
import time

import boto3
import pytest
import requests
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from resourced import embedded_s3
from tests.servers import ROOT, free_port, wait_for_port

BUCKET = "recordings"
MIB = 1024 * 1024


class EmbeddedS3:
    """One run of the embedded S3 on `var_dir`, as scripts/devserver.py starts it."""

    def __init__(self, var_dir, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(embedded_s3.server_argv(var_dir, "127.0.0.1", self.port), cwd=ROOT,
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, 60, self.process)
        self.client = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                                   aws_access_key_id="resourced", aws_secret_access_key="resourced",
                                   config=Config(retries={"max_attempts": 1}))

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=30)
        finally:
            self.log.close()

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def servers(tmp_path):
    """Start embedded S3 servers on one var dir; whatever a test leaves running is killed."""
    started = []

    def start():
        server = EmbeddedS3(tmp_path / "var", tmp_path / "s3.log")
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        server.log.close()


def blobs(tmp_path) -> list[str]:
    return sorted(path.name for path in (embedded_s3.data_dir(tmp_path / "var") / embedded_s3.BLOBS_SUBDIR).iterdir())


def test_every_object_is_back_after_ctrl_c(servers, tmp_path):
    first = servers()
    s3 = first.client
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="live/a/stream.mpd", Body=b"<MPD/>", ContentType="application/dash+xml",
                  Metadata={"recorded-by": "edge-3"})
    s3.put_object(Bucket=BUCKET, Key="archive/cold.mp4", Body=b"frozen bytes", StorageClass="GLACIER")
    s3.restore_object(Bucket=BUCKET, Key="archive/cold.mp4", RestoreRequest={"Days": 2})
    s3.put_object(Bucket=BUCKET, Key="gone.txt", Body=b"deleted before the stop")
    s3.delete_object(Bucket=BUCKET, Key="gone.txt")
    # a clip as the service uploads a large one: multipart, with parts of moto's 5 MiB minimum
    clip = os.urandom(11 * MIB + 123)
    s3.upload_file(str(_write(tmp_path / "clip.mp4", clip)), BUCKET, "export/clip.mp4",
                   Config=TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB),
                   ExtraArgs={"ContentType": "video/mp4"})
    clip_etag = s3.head_object(Bucket=BUCKET, Key="export/clip.mp4")["ETag"]
    # an upload still going on when the server stops
    upload_id = s3.create_multipart_upload(Bucket=BUCKET, Key="export/half.mp4")["UploadId"]
    s3.upload_part(Bucket=BUCKET, Key="export/half.mp4", UploadId=upload_id, PartNumber=1, Body=b"p" * (5 * MIB))

    assert first.stop(signal.SIGINT) == 0
    assert "saved" in first.read_log()

    second = servers()
    s3 = second.client
    assert "loaded 3 objects in 1 buckets" in second.read_log()
    listed = {item["Key"]: item for item in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert set(listed) == {"live/a/stream.mpd", "archive/cold.mp4", "export/clip.mp4"}

    manifest = s3.get_object(Bucket=BUCKET, Key="live/a/stream.mpd")
    assert manifest["Body"].read() == b"<MPD/>"
    assert manifest["ContentType"] == "application/dash+xml"
    assert manifest["Metadata"] == {"recorded-by": "edge-3"}

    head = s3.head_object(Bucket=BUCKET, Key="export/clip.mp4")
    assert (head["ContentLength"], head["ETag"], head["ContentType"]) == (len(clip), clip_etag, "video/mp4")
    body = s3.get_object(Bucket=BUCKET, Key="export/clip.mp4")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(clip).digest()
    ranged = s3.get_object(Bucket=BUCKET, Key="export/clip.mp4", Range=f"bytes={7 * MIB}-{7 * MIB + 99}")
    assert ranged["Body"].read() == clip[7 * MIB:7 * MIB + 100]
    # a presigned URL, as the admin's download link and `make demo` hand out
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "export/clip.mp4"}, ExpiresIn=60)
    assert requests.get(url, timeout=30).content == clip

    cold = s3.head_object(Bucket=BUCKET, Key="archive/cold.mp4")
    assert cold["StorageClass"] == "GLACIER"
    assert cold["Restore"].startswith('ongoing-request="false"')
    assert listed["archive/cold.mp4"]["StorageClass"] == "GLACIER"

    with pytest.raises(ClientError) as deleted:
        s3.head_object(Bucket=BUCKET, Key="gone.txt")
    assert deleted.value.response["Error"]["Code"] == "404"

    # the upload in progress goes on where it stopped
    parts = s3.list_parts(Bucket=BUCKET, Key="export/half.mp4", UploadId=upload_id)["Parts"]
    assert [(part["PartNumber"], part["Size"]) for part in parts] == [(1, 5 * MIB)]
    last = s3.upload_part(Bucket=BUCKET, Key="export/half.mp4", UploadId=upload_id, PartNumber=2, Body=b"q" * 10)
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key="export/half.mp4", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": parts[0]["ETag"]}, {"PartNumber": 2, "ETag": last["ETag"]}]},
    )
    assert s3.get_object(Bucket=BUCKET, Key="export/half.mp4")["Body"].read() == b"p" * (5 * MIB) + b"q" * 10
    assert second.stop(signal.SIGTERM) == 0


def test_writes_survive_sigkill_after_the_snapshot_delay(servers, tmp_path):
    first = servers()
    s3 = first.client
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="images/a.jpg", Body=b"first version")
    s3.put_object(Bucket=BUCKET, Key="images/a.jpg", Body=b"second version")
    s3.put_object(Bucket=BUCKET, Key="images/b.jpg", Body=b"b" * 1000, Metadata={"owner": "u1"})
    # a snapshot is due SNAPSHOT_MAX_DELAY_SECONDS after the first write at the latest
    time.sleep(embedded_s3.SNAPSHOT_MAX_DELAY_SECONDS + 2)
    first.process.kill()
    first.process.wait()

    second = servers()  # the lock of the killed server is gone with it
    s3 = second.client
    assert s3.get_object(Bucket=BUCKET, Key="images/a.jpg")["Body"].read() == b"second version"
    b = s3.get_object(Bucket=BUCKET, Key="images/b.jpg")
    assert (b["Body"].read(), b["Metadata"]) == (b"b" * 1000, {"owner": "u1"})
    # the overwritten version's bytes were removed from disk: one blob per object
    assert len(blobs(tmp_path)) == 2
    assert second.stop(signal.SIGINT) == 0


def test_a_second_server_on_the_same_var_dir_is_refused(servers, tmp_path):
    first = servers()
    first.client.create_bucket(Bucket=BUCKET)
    port = free_port()
    second = subprocess.run(embedded_s3.server_argv(tmp_path / "var", "127.0.0.1", port), cwd=ROOT, check=False,
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 2
    assert f"another embedded S3 (pid {first.process.pid}) uses" in second.stderr
    # the first one still answers and still owns its snapshot
    assert first.client.list_buckets()["Buckets"][0]["Name"] == BUCKET
    assert first.stop(signal.SIGINT) == 0


def test_an_unreadable_snapshot_stops_the_server_and_keeps_the_files(servers, tmp_path):
    folder = embedded_s3.data_dir(tmp_path / "var")
    folder.mkdir(parents=True)
    (folder / embedded_s3.STATE_NAME).write_bytes(b"not a pickle")
    started = subprocess.run(embedded_s3.server_argv(tmp_path / "var", "127.0.0.1", free_port()), cwd=ROOT, check=False,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 2
    assert "cannot read the embedded S3's snapshot" in started.stderr
    assert (folder / embedded_s3.STATE_NAME).read_bytes() == b"not a pickle"


def _write(path, data: bytes):
    path.write_bytes(data)
    return path
