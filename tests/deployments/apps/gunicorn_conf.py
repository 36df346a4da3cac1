"""gunicorn.conf.py as the README shows it: the moduletrace server hooks."""

from moduletrace.instrumentation.integrations.gunicorn import post_worker_init, worker_exit  # noqa: F401
