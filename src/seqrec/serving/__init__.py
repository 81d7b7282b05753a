"""Serving: the ``Recommender`` (``recommender``) over a model folder, its catalogue, faiss indexes and
ONNX backend, the event store, and the FastAPI service (``app`` with one router module per resource in
``routes``; the web page in ``web``)."""
