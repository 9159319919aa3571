"""F8: thin wrapper around `ptqtheory.figures.f8_optimality` (the figure code lives in the package).

Usage: ``python figures/f8_optimality.py --out out/ [--quick]``
"""

import sys

from ptqtheory.figures import f8_optimality
from ptqtheory.figures.common import script_main

if __name__ == "__main__":
    sys.exit(script_main(f8_optimality))
