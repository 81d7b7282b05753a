"""Evaluation: full ranking and the sampled protocol over every ``Scorer`` (``evaluator``,
``sampling``), and the tables and charts of a run (``report``). Imports only ``data`` below it."""
