"""The export app's metrics, read from the database at scrape time (registered with
resourced.metrics): exports by status and ErrorCode, active exports by stage, stage durations,
LackLength, bytes and seconds exported."""

from django.db.models import Count, FloatField, Max, Q, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from exports.models import Export
from exports.stages import STAGE_NAMES

STAGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
LACK_BUCKETS = (0.0, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def _le(bound: float) -> str:
    return repr(float(bound))


def export_families() -> list[Metric]:
    families: list[Metric] = []
    rows = GaugeMetricFamily(
        "resourced_exports", "Exports in the database by status and ErrorCode", labels=["status", "error_code"]
    )
    for row in Export.objects.values("status", "error_code").annotate(n=Count("pk")).order_by():
        rows.add_metric([row["status"], str(row["error_code"])], row["n"])
    families.append(rows)

    active = GaugeMetricFamily(
        "resourced_exports_active", "Queued, running and waiting (restoring, live edge) exports by status and stage", labels=["status", "stage"]
    )
    for row in (Export.objects.filter(status__in=Export.ACTIVE).values("status", "stage")
                .annotate(n=Count("pk")).order_by()):
        active.add_metric([row["status"], row["stage"]], row["n"])
    families.append(active)

    # Stage durations, from Export.timings (seconds per stage): one query, cumulative buckets.
    timed = Export.objects.annotate(**{f"t_{s}": Cast(KT(f"timings__{s}"), FloatField()) for s in STAGE_NAMES})
    aggregates = {}
    for s in STAGE_NAMES:
        field = f"t_{s}"
        aggregates[f"{s}_count"] = Count("pk", filter=Q(**{f"{field}__isnull": False}))
        aggregates[f"{s}_sum"] = Sum(field)
        for i, bound in enumerate(STAGE_BUCKETS):
            aggregates[f"{s}_le{i}"] = Count("pk", filter=Q(**{f"{field}__lte": bound}))
    totals = timed.aggregate(**aggregates)
    stage_seconds = HistogramMetricFamily(
        "resourced_export_stage_duration_seconds", "Time each pipeline stage took (Export.timings)", labels=["stage"]
    )
    for s in STAGE_NAMES:
        buckets = [(_le(b), totals[f"{s}_le{i}"]) for i, b in enumerate(STAGE_BUCKETS)]
        buckets.append(("+Inf", totals[f"{s}_count"]))
        stage_seconds.add_metric([s], buckets, sum_value=totals[f"{s}_sum"] or 0.0)
    families.append(stage_seconds)

    # LackLength and the bytes and minutes of ready exports.
    ready = Export.objects.filter(status=Export.Status.READY)
    lack_aggregates = {f"le{i}": Count("pk", filter=Q(lack_ms__lte=int(b * 1000))) for i, b in enumerate(LACK_BUCKETS)}
    sums = ready.aggregate(
        n=Count("pk"), lack=Sum("lack_ms"), uploaded=Sum("output_bytes"), clip=Sum("duration_ms"),
        incomplete=Count("pk", filter=Q(lack_ms__gt=0)), **lack_aggregates,
    )
    lack = HistogramMetricFamily(
        "resourced_export_lack_seconds", "LackLength of ready exports: requested media the recording lacked"
    )
    buckets = [(_le(b), sums[f"le{i}"]) for i, b in enumerate(LACK_BUCKETS)] + [("+Inf", sums["n"])]
    lack.add_metric([], buckets, sum_value=(sums["lack"] or 0) / 1000)
    families.append(lack)
    families.append(GaugeMetricFamily(
        "resourced_exports_incomplete", "Ready exports with LackLength > 0", value=sums["incomplete"]
    ))
    families.append(CounterMetricFamily(
        "resourced_export_uploaded_bytes", "Bytes of clips uploaded (ready exports)", value=sums["uploaded"] or 0
    ))
    families.append(CounterMetricFamily(
        "resourced_export_clip_seconds", "Seconds of clips exported (ready exports, as requested)",
        value=(sums["clip"] or 0) / 1000,
    ))
    downloaded = Export.objects.aggregate(n=Sum("bytes_downloaded"))["n"] or 0
    families.append(CounterMetricFamily(
        "resourced_export_downloaded_bytes", "Bytes of recording segments downloaded (every export)", value=downloaded
    ))
    last = Export.objects.aggregate(at=Max("finished_at"))["at"]
    if last is not None:
        families.append(GaugeMetricFamily(
            "resourced_export_last_finished_timestamp_seconds", "When the last export ended", value=last.timestamp()
        ))
    return families
