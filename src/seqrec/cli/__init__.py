"""The ``seqrec`` command line: the commands (``commands``), shared options (``options``), the commands
that take a model folder (``models``) and the demo (``demo``)."""
