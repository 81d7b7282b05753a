"""The service's routes, one router module per resource: ``recommendations``, ``items``, ``events``
(events and users' histories), ``admin`` (items added at run time, reloads) and ``operations`` (health,
readiness, the model, metrics, the web page). Each module's ``router(service)`` builds its
``APIRouter`` over the ``Service`` (``service``) that ``seqrec.serving.app.create_app`` made."""
