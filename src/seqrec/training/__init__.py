"""Training: the recipe (``recipe``), batches, the objective and its losses, optimisers and schedules,
the loop with validation and checkpoints (``loop``), several processes (``distributed``), warm starts
(``warm``), and ``fit_model``, the whole of a fit that the estimator and the workers share (``fit``)."""
