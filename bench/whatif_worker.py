"""The Celery app module of the bench's what-if workers (`celery -A bench.whatif_worker worker`).

The same app as resourced; in each pool process (worker_process_init, after Django is set up) the
fixes that bench/ proposes are patched in, so that their effect on whole exports is measured
without changing the service code:

F3 download: one GET per segment (get_object streamed to the file) instead of s3transfer's
   download_file, which sends a HEAD before each GET (exports/pipeline.py, download_keys).
F4 encode: libx264 with frame threads instead of PyAV's default slice threads
   (exports/media/encode.py, _encoder_options / the encoder's thread_type).
F5 cpu steps of an export in one task: pipeline.step_cut also runs encode and thumbnail, and the
   chain that download publishes is cut -> upload (encode and thumbnail signatures left out).
   Without it the cpu queue is FIFO over steps: exports submitted together all get cut, then each
   encode queues behind the remaining cuts and each thumbnail behind the remaining encodes, so every
   export is ready near the end of the batch (exports/tasks.py, download's chain).
"""
from celery.signals import worker_process_init

from resourced.celery import app  # noqa: F401  (celery -A finds the app here)


@worker_process_init.connect
def _patch(**kwargs):
    from bench.engine import patch_frame_threads
    from bench.whatif import SingleGetClient
    from exports import pipeline, tasks

    patch_frame_threads()

    chain = tasks.chain

    def chain_cut_then_upload(*signatures):
        return chain(*[s for s in signatures if s.task not in ("exports.encode", "exports.thumbnail")])

    tasks.chain = chain_cut_then_upload

    download_keys = pipeline.download_keys

    def download_keys_single_get(*, client, **kw):
        return download_keys(client=SingleGetClient(client), **kw)

    pipeline.download_keys = download_keys_single_get

    step_cut = pipeline.step_cut

    def step_cut_encode_thumbnail(export) -> None:
        step_cut(export)
        export.refresh_from_db()
        pipeline.step_encode(export)
        export.refresh_from_db()
        pipeline.step_thumbnail(export)

    pipeline.step_cut = step_cut_encode_thumbnail
