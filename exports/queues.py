"""The export app's queues, routes and periodic task (registered with resourced.celery).

media.io: network-bound steps (download, thumbnail and upload); media.cpu: cut and encode. Both are
host-bound: after download, an export's steps go to the queues of the host holding its work dir.
"""

from django.conf import settings

from resourced.celery import QUEUE_CALLBACKS, declare_queue, route_tasks, schedule_task

QUEUE_MEDIA_IO = declare_queue("media.io", host_bound=True, purpose="download (and a keyframe copy's cut), thumbnail, upload")
QUEUE_MEDIA_CPU = declare_queue("media.cpu", host_bound=True, purpose="cut, encode, getthumbnail")

# the pipeline's steps: exports.stages says which queue each stage runs on
route_tasks("exports.callbacks.*", QUEUE_CALLBACKS)
route_tasks("exports.download", QUEUE_MEDIA_IO)
route_tasks("exports.check_*", QUEUE_MEDIA_IO)  # a waiting export's download, sent again later
route_tasks("exports.process", QUEUE_MEDIA_CPU)
route_tasks("exports.upload", QUEUE_MEDIA_IO)
route_tasks("exports.getthumbnail", QUEUE_MEDIA_CPU)

schedule_task("exports-sweep-stale", "exports.sweep_stale", every_seconds=settings.EXPORT_SWEEP_INTERVAL_SECONDS)
