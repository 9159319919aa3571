"""F10: thin wrapper around `ptqtheory.figures.f10_dint` (the figure code lives in the package).

Usage: ``python figures/f10_dint.py --out out/ [--quick]``
"""

import sys

from ptqtheory.figures import f10_dint
from ptqtheory.figures.common import script_main

if __name__ == "__main__":
    sys.exit(script_main(f10_dint))
