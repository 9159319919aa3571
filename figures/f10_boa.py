"""F10: thin wrapper around `ptqtheory.figures.f10_boa` (the figure code lives in the package).

Usage: ``python figures/f10_boa.py --out out/ [--quick]``
"""

import sys

from ptqtheory.figures import f10_boa
from ptqtheory.figures.common import script_main

if __name__ == "__main__":
    sys.exit(script_main(f10_boa))
