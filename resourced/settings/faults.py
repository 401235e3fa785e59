"""Production settings plus FAULT_INJECTION from the environment: for the fault tests only.

The fault tests run the production stack (PostgreSQL, Redis, S3) with this module, so that they can
hold a stage open long enough to kill a worker inside it. Never deploy it.
"""

from .production import *  # noqa: F401,F403
from .production import env

FAULT_INJECTION = env.json("RESOURCED_FAULT_INJECTION", default={})
