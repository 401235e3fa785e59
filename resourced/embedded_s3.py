"""The embedded object store of `make run`: moto's S3 server, its objects kept under ``<VAR_DIR>/s3``.

moto keeps everything in memory, so a restart of the bare `moto_server` lost every recording, clip
and image while the database still pointed at them. This runs the same WSGI application and
request handler as `moto_server` and snapshots moto's S3 state to disk:

    <VAR_DIR>/s3/state.pickle   buckets, keys and their metadata, storage classes, restore
                                states, multipart uploads in progress: moto's own objects, pickled,
                                without the bytes of any object
    <VAR_DIR>/s3/blobs/<id>     the bytes of one object (or uploaded part), written once, when a
                                snapshot first meets it, and deleted once no snapshot refers to it
    <VAR_DIR>/s3/lock           held while a server uses the folder (with its pid)

A snapshot is taken a moment after each mutating request (anything but GET, HEAD and OPTIONS):
``SNAPSHOT_QUIET_SECONDS`` after the last one, at most ``SNAPSHOT_MAX_DELAY_SECONDS`` after the
first of a burst (longer only when snapshots get slow, see SNAPSHOT_COST_FACTOR), and once more at
SIGINT or SIGTERM, after the requests in flight have ended. A SIGKILL loses at most the writes of
that last second. Each file is written to a temporary name and renamed, so a kill in the middle of
a snapshot leaves the previous one whole. No fsync: this survives the process, not a power cut,
which is all a development stand-in needs.

Only new objects are written, so a snapshot costs the pickling of the metadata (0.1 s for 3000
keys) plus the bytes of what changed. The bytes are streamed from moto's own buffer in 1 MiB
chunks, so no object is held twice in memory; at start they are streamed back the same way before
the port opens, so the open port means the objects are there.

The snapshot is moto's pickled objects, so it belongs to the pinned moto version: a later moto
that cannot read it stops the server with a message saying so (nothing is thrown away).

Settings-independent on purpose (it imports no Django and no Celery) and started by path with
``python -P`` (see `server_argv`): run as a script from this folder without -P, the folder would
come first on sys.path and resourced/logging.py would shadow the standard library's logging.
"""

from __future__ import annotations

import argparse
import copyreg
import os
import pickle
import shutil
import signal
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

S3_SUBDIR = "s3"
STATE_NAME = "state.pickle"
BLOBS_SUBDIR = "blobs"
LOCK_NAME = "lock"
SNAPSHOT_FORMAT = 1
SNAPSHOT_QUIET_SECONDS = 0.2
SNAPSHOT_MAX_DELAY_SECONDS = 1.0
# a snapshot re-pickles the metadata of every key (0.1 s for 3000 keys here) and holds mutations
# back meanwhile: under a steady stream of writes the delay grows to this many times the last
# snapshot's duration, so that writes wait on snapshots a fifth of the time at most
SNAPSHOT_COST_FACTOR = 5
# longest wait at shutdown for requests in flight (an upload part being received) before the last
# snapshot is taken without them
SHUTDOWN_GRACE_SECONDS = 10.0
COPY_CHUNK = 1024 * 1024
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# the attribute, in a moto FakeKey, that names the blob already holding its bytes; a key's bytes
# never change after it is made (moto makes a new key for every put, copy and completed upload)
BLOB_ATTR = "_resourced_blob"


class EmbeddedS3Error(RuntimeError):
    """The embedded S3 cannot start: its folder is in use by another server, or its snapshot
    cannot be read."""


def data_dir(var_dir: str | os.PathLike) -> Path:
    """Where the snapshot and the blobs live: ``<VAR_DIR>/s3``, absolute."""
    return Path(os.path.abspath(var_dir)) / S3_SUBDIR


def server_argv(var_dir: str | os.PathLike, host: str, port: int | str, *,
                python: str | os.PathLike = sys.executable) -> list[str]:
    """The command line of the embedded S3 of `var_dir` listening on host:port."""
    return [os.fspath(python), "-P", os.path.abspath(__file__), "--data-dir", str(data_dir(var_dir)),
            "--host", host, "--port", str(port)]


class MutationGate:
    """Mutating requests run together (moto guards its own structures) but never while a snapshot
    reads the state: pickling a dict that another thread grows fails, or saves half a change.
    Once a snapshot waits, new mutations wait behind it, so a long multipart upload cannot starve it."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._mutations = 0
        self._snapshotting = False

    @contextmanager
    def mutation(self):
        with self._condition:
            while self._snapshotting:
                self._condition.wait()
            self._mutations += 1
        try:
            yield
        finally:
            with self._condition:
                self._mutations -= 1
                self._condition.notify_all()

    @contextmanager
    def exclusive(self, timeout: float | None = None):
        """No mutation runs inside; `timeout` bounds the wait for those in flight (at shutdown)."""
        with self._condition:
            while self._snapshotting:
                self._condition.wait()
            self._snapshotting = True
            self._condition.wait_for(lambda: self._mutations == 0, timeout)
        try:
            yield
        finally:
            with self._condition:
                self._snapshotting = False
                self._condition.notify_all()


class Store:
    """The snapshot of moto's S3 state in one folder."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.state_path = self.folder / STATE_NAME
        self.blobs = self.folder / BLOBS_SUBDIR

    def prepare(self) -> None:
        self.blobs.mkdir(parents=True, exist_ok=True)
        # temporary files of a snapshot that a kill interrupted
        for leftover in [*self.folder.glob("*.tmp"), *self.blobs.glob("*.tmp")]:
            leftover.unlink(missing_ok=True)

    # saving

    def save(self) -> dict:
        """Write the snapshot of moto's S3 state; its counts. The caller keeps mutations out."""
        from moto import __version__ as moto_version
        from moto.s3.models import s3_backends

        referenced: set[str] = set()
        root = {
            "format": SNAPSHOT_FORMAT,
            "moto": moto_version,
            "backends": [(account, partition, backend)
                         for account, partition, backend in s3_backends.iter_backends()],
            "bucket_accounts": dict(s3_backends.bucket_accounts),
        }
        temporary = self.state_path.with_name(STATE_NAME + ".tmp")
        with open(temporary, "wb") as out:
            _SnapshotPickler(out, self, referenced).dump(root)
        os.replace(temporary, self.state_path)
        # blobs of deleted and overwritten objects, now that no snapshot on disk refers to them
        for blob in self.blobs.iterdir():
            if blob.name not in referenced:
                blob.unlink(missing_ok=True)
        return {"buckets": sum(len(backend.buckets) for _, _, backend in root["backends"]),
                "blobs": len(referenced)}

    def write_blob(self, key) -> str:
        """Stream the bytes of a moto FakeKey into a new blob; its name."""
        name = uuid.uuid4().hex
        temporary = self.blobs / (name + ".tmp")
        with open(temporary, "wb") as out, key.lock:
            key._value_buffer.seek(0)
            shutil.copyfileobj(key._value_buffer, out, COPY_CHUNK)
        os.replace(temporary, self.blobs / name)
        return name

    # loading

    def load(self) -> dict | None:
        """Put the snapshot's state into moto's backends; its counts, or None without a snapshot."""
        from moto import __version__ as moto_version
        from moto.s3.models import s3_backends

        if not self.state_path.exists():
            return None
        try:
            with open(self.state_path, "rb") as source:
                root = _SnapshotUnpickler(source, self).load()
            if root.get("format") != SNAPSHOT_FORMAT:
                raise ValueError(f"snapshot format {root.get('format')!r}, this server reads {SNAPSHOT_FORMAT}")
        except Exception as exc:
            raise EmbeddedS3Error(
                f"cannot read the embedded S3's snapshot {self.state_path} ({type(exc).__name__}: {exc}; "
                f"this is moto {moto_version}): move {self.folder} away to start empty, or `make clean` "
                "to remove every local state"
            ) from exc
        for account, partition, backend in root["backends"]:
            s3_backends[account][partition] = backend
        s3_backends.bucket_accounts.update(root["bucket_accounts"])
        return {"buckets": sum(len(backend.buckets) for _, _, backend in root["backends"]),
                "objects": sum(len(bucket.keys) for _, _, backend in root["backends"]
                               for bucket in backend.buckets.values())}

    def fill_key(self, key, state: dict) -> None:
        """The state setter of a FakeKey read from a snapshot: its attributes, a new buffer (in
        memory up to moto's limit, then a temporary file, as moto makes them) and its bytes."""
        import tempfile

        key.__dict__.update(state)
        key._value_buffer = tempfile.SpooledTemporaryFile(max_size=key._max_buffer_size)
        if state[BLOB_ATTR] is not None:
            with open(self.blobs / state[BLOB_ATTR], "rb") as source:
                shutil.copyfileobj(source, key._value_buffer, COPY_CHUNK)
        key.lock = threading.Lock()


class _SnapshotPickler(pickle.Pickler):
    """Pickles moto's S3 state with each FakeKey's bytes in a blob file instead of in the stream."""

    def __init__(self, file, store: Store, referenced: set[str]):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        from moto.s3.models import FakeKey

        self.fake_key = FakeKey
        self.store = store
        self.referenced = referenced

    def reducer_override(self, obj):
        if not isinstance(obj, self.fake_key):
            return NotImplemented
        blob = obj.__dict__.get(BLOB_ATTR)
        if obj.disposed:
            # the parts of a completed multipart upload: moto closes their buffers and keeps only
            # their sizes and ETags; its own pickling saves them empty, and so does this
            blob = None
        elif blob is None or not (self.store.blobs / blob).exists():
            blob = self.store.write_blob(obj)
            setattr(obj, BLOB_ATTR, blob)
        if blob is not None:
            self.referenced.add(blob)
        # a copy (atomic under the GIL): a GET may move a restore's status while this runs
        state = {name: value for name, value in obj.__dict__.copy().items() if name not in ("_value_buffer", "lock")}
        state[BLOB_ATTR] = blob
        # (new object of the class, no arguments, state, -, -, state setter): memoized like any
        # object, so a key reached twice is one key again after loading
        return copyreg.__newobj__, (type(obj),), state, None, None, _fill_key


def _fill_key(key, state):  # pragma: no cover - named in the stream; the unpickler substitutes Store.fill_key
    raise RuntimeError("a snapshot is read through Store.load")


class _SnapshotUnpickler(pickle.Unpickler):
    def __init__(self, file, store: Store):
        super().__init__(file)
        self.store = store

    def find_class(self, module: str, name: str):
        # the state setter is this module's, named "__main__" when the server runs as a script
        if name == "_fill_key" and module in ("__main__", __name__, "resourced.embedded_s3"):
            return self.store.fill_key
        return super().find_class(module, name)


class Snapshotter:
    """Takes a snapshot shortly after mutations, in a thread of its own, and a last one at stop."""

    def __init__(self, store: Store, gate: MutationGate):
        self.store = store
        self.gate = gate
        self._condition = threading.Condition()
        self._first_change: float | None = None
        self._last_change = 0.0
        self._max_delay = SNAPSHOT_MAX_DELAY_SECONDS
        self._thread = threading.Thread(target=self._run, name="s3-snapshot", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def changed(self) -> None:
        with self._condition:
            now = time.monotonic()
            if self._first_change is None:
                self._first_change = now
            self._last_change = now
            self._condition.notify()

    def _due(self) -> float | None:
        """Seconds until the pending snapshot is due, or None when none is pending."""
        if self._first_change is None:
            return None
        return max(0.0, min(self._last_change + SNAPSHOT_QUIET_SECONDS,
                            self._first_change + self._max_delay) - time.monotonic())

    def _run(self) -> None:
        while True:
            with self._condition:
                while (wait := self._due()) != 0.0:
                    self._condition.wait(wait)
                self._first_change = None
            self.snapshot()

    def snapshot(self, grace: float | None = None) -> None:
        started = time.monotonic()
        try:
            with self.gate.exclusive(grace):
                counts = self.store.save()
            self._max_delay = max(SNAPSHOT_MAX_DELAY_SECONDS, SNAPSHOT_COST_FACTOR * (time.monotonic() - started))
        except Exception as exc:  # a full disk: say so, keep the previous snapshot, try again
            print(f"[embedded s3] snapshot to {self.store.folder} failed: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)
            if grace is None:
                time.sleep(SNAPSHOT_MAX_DELAY_SECONDS)
                self.changed()
            return
        if grace is not None:
            print(f"[embedded s3] saved {counts['blobs']} objects and parts in {counts['buckets']} buckets "
                  f"to {self.store.folder} in {time.monotonic() - started:.2f} s", file=sys.stderr, flush=True)


def persisting(app, gate: MutationGate, snapshotter: Snapshotter):
    """The WSGI middleware: mutations pass the gate and schedule a snapshot once answered."""

    def wrapped(environ, start_response):
        if environ.get("REQUEST_METHOD", "GET") in READ_METHODS:
            return app(environ, start_response)
        # moto does the whole operation inside the call (the body is read, the state changed);
        # what is iterated afterwards is the answer alone
        with gate.mutation():
            result = app(environ, start_response)
        snapshotter.changed()
        return result

    return wrapped


def lock_folder(folder: Path):
    """Hold ``<folder>/lock`` for the life of the process: two servers on one folder would
    overwrite each other's snapshots. The open file (whose lock the kernel drops when the process
    ends, even by SIGKILL)."""
    import fcntl

    handle = open(folder / LOCK_NAME, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise EmbeddedS3Error(
            f"another embedded S3 (pid {holder}) uses {folder} (left over from an earlier `make run`?): "
            f"stop it (kill {holder}) and start again"
        ) from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def serve(folder: Path, host: str, port: int) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    folder.mkdir(parents=True, exist_ok=True)
    lock = lock_folder(folder)
    store = Store(folder)
    store.prepare()
    started = time.monotonic()
    counts = store.load()
    if counts is None:
        print(f"[embedded s3] no snapshot in {folder}: starting empty", file=sys.stderr, flush=True)
    else:
        print(f"[embedded s3] loaded {counts['objects']} objects in {counts['buckets']} buckets from {folder} "
              f"in {time.monotonic() - started:.2f} s", file=sys.stderr, flush=True)
    gate = MutationGate()
    snapshotter = Snapshotter(store, gate)
    app = persisting(DomainDispatcherApplication(create_backend_app), gate, snapshotter)
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)

    def stop(signum, _frame):
        # a second Ctrl-C must not break off the last snapshot
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    snapshotter.start()
    try:
        server.serve_forever()
    except SystemExit:
        pass
    finally:
        # no new connection; the requests in flight finish in their threads and the last snapshot
        # waits for them (at most SHUTDOWN_GRACE_SECONDS)
        server.server_close()
        snapshotter.snapshot(grace=SHUTDOWN_GRACE_SECONDS)
        lock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, type=Path, help="the folder of the snapshot (<VAR_DIR>/s3)")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=9000)
    args = parser.parse_args(argv)
    try:
        serve(args.data_dir.absolute(), args.host, args.port)
    except EmbeddedS3Error as exc:
        print(f"[embedded s3] {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
