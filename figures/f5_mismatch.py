"""F5: thin wrapper around `ptqtheory.figures.f5_mismatch` (the figure code lives in the package).

Usage: ``python figures/f5_mismatch.py --out out/ [--quick]``
"""

import sys

from ptqtheory.figures import f5_mismatch
from ptqtheory.figures.common import script_main

if __name__ == "__main__":
    sys.exit(script_main(f5_mismatch))
