"""Data: read interactions and item facts, clean them, build the ``Dataset``, split it.

One pass from a file to a data set: ``readers.load_dataset`` detects the format (``layouts``, the
MovieLens folders, tables), reads a raw frame, standardises its columns (``columns``), cleans it and
builds the ``Dataset`` (``dataset``), which ``prepared`` saves and reads; ``split`` makes the
leave-one-out views; ``download`` fetches public sets; ``synthetic`` makes a planted one.
"""

from seqrec.data.dataset import PAD, Dataset, IdMap, id_key

__all__ = ["PAD", "Dataset", "IdMap", "id_key"]
