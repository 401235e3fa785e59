"""The embedded broker under several writing processes: every message arrives whole, once."""

import multiprocessing
import time

from kombu import Connection

from resourced.embedded_broker import Transport


def options(root) -> dict:
    folder = str(root / "queue")
    return {"data_folder_in": folder, "data_folder_out": folder, "control_folder": str(root / "control"),
            "store_processed": False, "polling_interval": 0.01}


def produce(root, producer: int, count: int) -> None:
    with Connection(transport=Transport, transport_options=options(root)) as conn:
        queue = conn.SimpleQueue("burst")
        for n in range(count):
            queue.put({"producer": producer, "n": n, "pad": "x" * 3_000_000})
        queue.close()


def test_messages_written_by_several_processes_arrive_whole_and_once(tmp_path):
    for sub in ("queue", "control"):
        (tmp_path / sub).mkdir()
    producers = [multiprocessing.get_context("fork").Process(target=produce, args=(tmp_path, p, 20))
                 for p in range(3)]
    for process in producers:
        process.start()
    seen = set()
    with Connection(transport=Transport, transport_options=options(tmp_path)) as conn:
        queue = conn.SimpleQueue("burst")
        deadline = time.monotonic() + 60
        while len(seen) < 60 and time.monotonic() < deadline:
            try:
                message = queue.get(timeout=0.5)
            except queue.Empty:
                continue
            body = message.payload
            assert len(body["pad"]) == 3_000_000
            key = (body["producer"], body["n"])
            assert key not in seen
            seen.add(key)
            message.ack()
        queue.close()
    for process in producers:
        process.join(timeout=30)
    assert len(seen) == 60
