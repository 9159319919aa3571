"""F9: thin wrapper around `ptqtheory.figures.f9_owq` (the figure code lives in the package).

Usage: ``python figures/f9_owq.py --out out/ [--quick]``
"""

import sys

from ptqtheory.figures import f9_owq
from ptqtheory.figures.common import script_main

if __name__ == "__main__":
    sys.exit(script_main(f9_owq))
