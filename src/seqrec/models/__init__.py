"""Models, each a ``Scorer``: SASRec (``sasrec``) with its item-feature layers (``features``,
``feature_layers``), the baselines (``baselines``), and the model folder (``folder``)."""
