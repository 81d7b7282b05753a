"""``python -m seqrec``: the command line (so ``torchrun --nproc_per_node N -m seqrec train ...`` works)."""

import sys

from seqrec.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
