from django.core.management.base import BaseCommand

from resourced.sessions import session_create


class Command(BaseCommand):
    help = "Issue a SessionId for an API client of the local session backend and print it."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="the userid the session belongs to")
        parser.add_argument("--ttl", type=int, default=None, help="lifetime in seconds")
        parser.add_argument("--note", default="", help="a note shown in the admin")

    def handle(self, *args, user, ttl, note, **options):
        _session, session_id = session_create(userid=user, ttl_seconds=ttl, note=note)
        self.stdout.write(session_id)
