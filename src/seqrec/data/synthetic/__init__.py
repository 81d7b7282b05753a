"""The embedded synthetic data set: the story (``story``), the same story at any size (``scale``), and
writing it to CSV or Parquet (``files``)."""
