"""One line per framework: what each host needs so that no span is lost on the way out.

``configure()`` already flushes on SIGTERM, at exit, at the end of a uvicorn server's graceful
shutdown and in Celery's worker shutdown signals. These modules add what a framework offers on top:

- :mod:`.fastapi`: ``instrument_app(app)``: a flush after the ASGI lifespan shutdown, a check that
  every stage decorator sits where FastAPI calls it, and a dependency reading the creation's
  carrier from request headers;
- :mod:`.celery`: ``instrument()``: opentelemetry-instrumentation-celery (the trace travels in
  task headers) and the worker-process hooks;
- :mod:`.flask`: ``instrument_app(app)``: the same decorator check for Flask views;
- :mod:`.gunicorn`: ``post_worker_init`` / ``worker_exit`` server hooks for ``gunicorn.conf.py``
  (needed with ``--preload`` only);
- :mod:`.sqlalchemy`: ``TraceCarrierMixin`` / ``CarrierType``: the creation's carrier kept in the
  module's row, continued by every later load.
"""
