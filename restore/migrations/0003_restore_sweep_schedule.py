"""Schedule restore.sweep with django-celery-beat (the beat of this project reads the database).

Staff can change the interval or disable it in the admin under Periodic tasks.
"""

from django.conf import settings
from django.db import migrations

TASK_NAME = "restore-sweep"


def schedule(apps, schema_editor):
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every = getattr(settings, "RESTORE_SWEEP_SECONDS", 60)
    interval, _ = interval_model.objects.get_or_create(every=every, period="seconds")
    task_model.objects.get_or_create(
        name=TASK_NAME,
        defaults={"task": "restore.sweep", "interval": interval, "queue": "restore",
                  "description": "Pick up restore flows and callbacks whose next message was lost"},
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("restore", "0002_callback_attempt_started_at"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
