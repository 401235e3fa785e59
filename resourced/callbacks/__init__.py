"""Signed client callbacks, one implementation for every app that calls clients back.

- ``http``: the signature, the SSRF guard and one HTTP attempt (no database).
- ``resourced.models.CallbackBase`` / ``CallbackDeliveryBase``: the fields of a callback and of one
  delivery attempt; each app has its concrete models (restore.Callback for PutRestoreResult,
  exports.ExportCallback for CallbackUrl) with a foreign key to what it reports on.
- ``delivery``: claiming an attempt, sending it, recording it, and deciding what comes next
  (retry with backoff until the deadline, delivered, refused, failed), and redelivery.

The apps keep their own tasks, ordering rules and bodies; they call ``delivery`` to do the rest.
"""
