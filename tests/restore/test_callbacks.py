"""Callback delivery: signatures and delivery ids on every attempt, retries with backoff until the
answer is {"code": 0}, bounded retries when nobody answers, redirects not followed, and the SSRF
guard refusing internal addresses without connecting."""

import json
import socket
import time
import uuid

import pytest

from resourced.callbacks import http as http_callbacks
from resourced.callbacks.http import address_problem, resolve_checked, verify_signature
from restore.models import Callback, CallbackDelivery, RestoreJob
from restore.services import callback_create, callback_deliver, callback_redeliver, restore_job_create
from tests.restore.conftest import CALLBACK_RETRY_SECONDS
from tests.servers import wait_for


def make_job(callback_url: str, files=("warm/a.ts",), bucket: str = "recordings") -> RestoreJob:
    job, _ = restore_job_create(userid="tester", task_id=f"job-{uuid.uuid4().hex[:8]}", files=list(files),
                                file_dir="restored", callback_url=callback_url, days=1, tier="Standard")
    return job


# --- The SSRF guard (no worker: the delivery service runs here, CALLBACK_ALLOW_PRIVATE false) -----


@pytest.fixture
def listener():
    """A loopback socket that records whether anything connected to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.3)

    def connections() -> int:
        count = 0
        while True:
            try:
                conn, _ = sock.accept()
            except (TimeoutError, socket.timeout):
                return count
            conn.close()
            count += 1

    yield sock.getsockname()[1], connections
    sock.close()


@pytest.fixture
def listener6():
    sock = socket.socket(socket.AF_INET6)
    sock.bind(("::1", 0))
    sock.listen(8)
    sock.settimeout(0.3)
    yield sock.getsockname()[1], sock
    sock.close()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url, kind",
    [
        ("http://127.0.0.1:{port}/cb", "loopback"),
        ("http://localhost:{port}/cb", "loopback"),
        ("http://10.1.2.3/cb", "private"),
        ("http://192.168.0.10:8080/cb", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::ffff:127.0.0.1]:{port}/cb", "loopback"),
        ("http://0.0.0.0:{port}/cb", "unspecified"),
        ("http://100.64.1.1/cb", "non-global"),
    ],
)
def test_internal_addresses_are_refused_without_connecting(settings, listener, url, kind):
    settings.CALLBACK_ALLOW_PRIVATE = False
    port, connections = listener
    job = make_job(url.format(port=port))
    callback = callback_create(job=job, type=Callback.Type.NETWORK_TEST)

    assert callback_deliver(callback_id=callback.id, attempt=1) is None  # no retry
    callback.refresh_from_db()
    assert callback.state == Callback.State.REFUSED and callback.attempts == 1
    delivery = CallbackDelivery.objects.get(callback=callback)
    assert delivery.outcome == CallbackDelivery.Outcome.REFUSED
    assert delivery.delivery_id == callback.delivery_id
    assert f"a {kind} address" in delivery.error and delivery.http_status is None and delivery.address == ""
    assert connections() == 0


@pytest.mark.django_db
def test_ipv6_loopback_is_refused_without_connecting(settings, listener6):
    settings.CALLBACK_ALLOW_PRIVATE = False
    port, sock = listener6
    callback = callback_create(job=make_job(f"http://[::1]:{port}/cb"), type=Callback.Type.NETWORK_TEST)
    callback_deliver(callback_id=callback.id, attempt=1)
    delivery = CallbackDelivery.objects.get(callback=callback)
    assert delivery.outcome == "refused" and "::1 is a loopback address" in delivery.error
    with pytest.raises((TimeoutError, socket.timeout)):
        sock.accept()


@pytest.mark.parametrize(
    "address, problem",
    [
        ("8.8.8.8", None), ("2606:4700:4700::1111", None),
        ("127.0.0.53", "loopback"), ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("fd00::1", "private"),
        ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"), ("240.0.0.1", "reserved"), ("::", "unspecified"),
        ("::ffff:10.0.0.1", "private"), ("2002:7f00:1::", "loopback"), ("64:ff9b::a9fe:a9fe", "link-local"),
        ("100.64.0.1", "non-global"), ("198.18.0.1", "private"),
    ],
)
def test_address_classification(address, problem):
    assert address_problem(address) == problem


def test_every_resolved_address_is_checked(monkeypatch):
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443)),
               (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 443))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: answers)
    with pytest.raises(http_callbacks.CallbackRefused, match="rebind.example resolves to 10.0.0.7"):
        resolve_checked("rebind.example", 443, allow_private=False)
    assert resolve_checked("rebind.example", 443, allow_private=True) == ["93.184.215.14", "10.0.0.7"]


@pytest.mark.django_db
def test_redirects_are_not_followed(settings, receiver_factory):
    settings.CALLBACK_ALLOW_PRIVATE = True
    settings.CALLBACK_BACKOFF_BASE_SECONDS = 5
    target = receiver_factory()
    redirecting = receiver_factory([(302, {"code": 0})])
    redirecting.redirect_to = target.url
    callback = callback_create(job=make_job(redirecting.url), type=Callback.Type.NETWORK_TEST)

    following = callback_deliver(callback_id=callback.id, attempt=1)
    assert following is not None and following.attempt == 2 and following.countdown == 5
    delivery = CallbackDelivery.objects.get(callback=callback)
    assert delivery.outcome == "http_error" and delivery.http_status == 302
    assert "redirect" in delivery.error and "not followed" in delivery.error
    assert len(redirecting.requests) == 1 and target.requests == []
    callback.refresh_from_db()
    assert callback.state == Callback.State.PENDING and callback.next_attempt_at is not None


@pytest.mark.django_db
def test_a_duplicate_message_for_an_attempt_already_made_does_nothing(settings, receiver_factory):
    settings.CALLBACK_ALLOW_PRIVATE = True
    receiver = receiver_factory()
    callback = callback_create(job=make_job(receiver.url), type=Callback.Type.NETWORK_TEST)
    assert callback_deliver(callback_id=callback.id, attempt=1) is None
    assert callback_deliver(callback_id=callback.id, attempt=1) is None
    assert len(receiver.requests) == 1 and CallbackDelivery.objects.count() == 1


# --- Through the worker ----------------------------------------------------------------------


def deliveries(callback: Callback) -> list[CallbackDelivery]:
    return list(CallbackDelivery.objects.filter(callback=callback).order_by("attempt"))


@pytest.mark.django_db(transaction=True)
def test_a_receiver_that_fails_a_few_times_gets_the_same_signed_delivery_until_it_answers_code_0(
    restore_worker, s3, receiver_factory, post_restore
):
    s3.put_object(Bucket="recordings", Key="warm/flaky.ts", Body=b"x")
    receiver = receiver_factory([
        (500, {"error": "boom"}),
        (200, {"code": 7, "message": "busy"}),
        (200, b"<html>not json</html>"),
        (200, {"code": 0, "message": "ok"}),
    ])
    response = post_restore(task_id="flaky-1", files=["warm/flaky.ts"], file_dir="restored/flaky",
                            callback_url=receiver.url)
    assert response.status_code == 200

    job = RestoreJob.objects.get(task_id="flaky-1")
    wait_for(lambda: Callback.objects.filter(job=job, type=1, state="delivered").exists(), 30, what="type 1 delivered")
    test_callback = Callback.objects.get(job=job, type=0)
    rows = deliveries(test_callback)
    assert [(r.attempt, r.outcome, r.http_status) for r in rows] == [
        (1, "http_error", 500), (2, "rejected", 200), (3, "rejected", 200), (4, "delivered", 200)]
    assert {r.delivery_id for r in rows} == {test_callback.delivery_id}
    assert '"code": 7' in rows[1].response_excerpt and "not 0" in rows[1].error
    assert "not JSON" in rows[2].error

    requests = receiver.requests
    assert len(requests) == 5  # four tries of type 0, then type 1
    first_four = requests[:4]
    assert {r["headers"]["X-Resourced-Delivery"] for r in first_four} == {str(test_callback.delivery_id)}
    assert [r["headers"]["X-Resourced-Attempt"] for r in first_four] == ["1", "2", "3", "4"]
    for r in requests:
        verify_signature(r["body"], r["headers"]["X-Resourced-Signature"],
                         delivery_id=r["headers"]["X-Resourced-Delivery"], secret="embedded-callback-secret",
                         tolerance=300)
    assert len({r["body"] for r in first_four}) == 1  # the same body on every retry
    gaps = [b["time"] - a["time"] for a, b in zip(first_four, first_four[1:])]
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95 and gaps[2] >= 1.9  # 0.5 s, 1 s, 2 s backoff

    result = json.loads(requests[4]["body"])
    assert result["type"] == 1 and result["file_list_status"] == [{"file_name": "flaky.ts", "file_code": 0}]
    assert requests[4]["headers"]["X-Resourced-Delivery"] != str(test_callback.delivery_id)


@pytest.mark.django_db(transaction=True)
def test_a_receiver_that_never_answers_is_retried_with_timeouts_until_the_retry_window_ends(
    restore_worker, s3, receiver_factory, post_restore
):
    s3.put_object(Bucket="recordings", Key="warm/silent.ts", Body=b"x")
    receiver = receiver_factory([(200, None)])  # accepts the connection, never answers
    started = time.monotonic()
    post_restore(task_id="silent-1", files=["warm/silent.ts"], file_dir="restored/silent", callback_url=receiver.url)

    job = RestoreJob.objects.get(task_id="silent-1")
    callback = wait_for(lambda: Callback.objects.filter(job=job, type=0, state="failed").first(),
                        CALLBACK_RETRY_SECONDS + 15, what="type 0 given up")
    elapsed = time.monotonic() - started
    rows = deliveries(callback)
    assert 3 <= len(rows) <= 6, [(r.attempt, r.outcome) for r in rows]
    assert all(r.outcome == "timeout" and r.http_status is None for r in rows)
    assert all(900 <= r.duration_ms <= 2500 for r in rows)  # CALLBACK_TIMEOUT is 1 s for this worker
    assert {r.delivery_id for r in rows} == {callback.delivery_id}
    assert elapsed < CALLBACK_RETRY_SECONDS + 10
    assert len([r for r in receiver.requests if json.loads(r["body"])["type"] == 0]) == len(rows)
    # the result is not sent before the network test has given up
    result = Callback.objects.get(job=job, type=1)
    first_result_try = CallbackDelivery.objects.filter(callback=result).order_by("attempt").first()
    assert first_result_try is None or first_result_try.started_at >= rows[-1].started_at


@pytest.mark.django_db(transaction=True)
def test_redeliver_sends_the_same_delivery_again(restore_worker, s3, receiver_factory, post_restore):
    s3.put_object(Bucket="recordings", Key="warm/again.ts", Body=b"x")
    receiver = receiver_factory()
    post_restore(task_id="again-1", files=["warm/again.ts"], file_dir="restored/again", callback_url=receiver.url)
    job = RestoreJob.objects.get(task_id="again-1")
    result = wait_for(lambda: Callback.objects.filter(job=job, type=1, state="delivered").first(), 30,
                      what="type 1 delivered")

    callback_redeliver(callback=result)
    wait_for(lambda: CallbackDelivery.objects.filter(callback=result, attempt=2, outcome="delivered").exists(), 20,
             what="redelivered")
    ids = [r["headers"]["X-Resourced-Delivery"] for r in receiver.requests if json.loads(r["body"])["type"] == 1]
    assert ids == [str(result.delivery_id)] * 2


def self_signed_certificate(directory) -> tuple[str, str]:
    """A certificate for the name "localhost" only (not for 127.0.0.1), and its key."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.mark.django_db
def test_https_checks_the_certificate_for_the_url_host_while_connecting_to_the_checked_address(
    settings, receiver_factory, tmp_path
):
    import ssl

    settings.CALLBACK_ALLOW_PRIVATE = True
    cert, key = self_signed_certificate(tmp_path)
    receiver = receiver_factory()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    port = receiver.port

    settings.CALLBACK_CA_BUNDLE = cert
    ok = callback_create(job=make_job(f"https://localhost:{port}/cb"), type=Callback.Type.NETWORK_TEST)
    assert callback_deliver(callback_id=ok.id, attempt=1) is None
    delivery = CallbackDelivery.objects.get(callback=ok)
    assert delivery.outcome == "delivered" and delivery.address in ("127.0.0.1", "::1"), delivery.error
    assert receiver.requests[0]["headers"]["Host"] == f"localhost:{port}"

    # the certificate names localhost, not 127.0.0.1: refused by the TLS check
    by_address = callback_create(job=make_job(f"https://127.0.0.1:{port}/cb"), type=Callback.Type.NETWORK_TEST)
    callback_deliver(callback_id=by_address.id, attempt=1)
    assert CallbackDelivery.objects.get(callback=by_address).outcome == "connection_error"

    settings.CALLBACK_CA_BUNDLE = ""  # the public bundle does not know this certificate
    public = callback_create(job=make_job(f"https://localhost:{port}/cb"), type=Callback.Type.NETWORK_TEST)
    callback_deliver(callback_id=public.id, attempt=1)
    failed = CallbackDelivery.objects.get(callback=public)
    assert failed.outcome == "connection_error" and "CERTIFICATE_VERIFY_FAILED" in failed.error
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_the_admin_redeliver_action_queues_the_same_delivery(admin_client, settings, receiver_factory,
                                                             django_capture_on_commit_callbacks):
    settings.CALLBACK_ALLOW_PRIVATE = True
    receiver = receiver_factory()
    callback = callback_create(job=make_job(receiver.url), type=Callback.Type.NETWORK_TEST)
    callback_deliver(callback_id=callback.id, attempt=1)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = admin_client.post("/admin/restore/callback/", {"action": "redeliver", "_selected_action": [callback.id]})
    assert response.status_code == 302
    assert len(queued) == 1
    callback.refresh_from_db()
    assert callback.state == Callback.State.PENDING and callback.deadline is not None
    assert callback_deliver(callback_id=callback.id, attempt=2) is None
    assert [r["headers"]["X-Resourced-Delivery"] for r in receiver.requests] == [str(callback.delivery_id)] * 2
    assert admin_client.get(f"/admin/restore/callback/{callback.id}/change/").status_code == 200
    assert admin_client.get(f"/admin/restore/restorejob/{callback.job_id}/change/").status_code == 200
