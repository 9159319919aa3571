"""F4: thin wrapper around `ptqtheory.figures.f4_alphabet` (the figure code lives in the package).

Usage: ``python figures/f4_alphabet.py --out out/ [--quick]``
"""

import sys

from ptqtheory.figures import f4_alphabet
from ptqtheory.figures.common import script_main

if __name__ == "__main__":
    sys.exit(script_main(f4_alphabet))
