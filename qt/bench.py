"""``python -m qt.bench``: the command; its code is ``qt.tools.bench``."""

import sys

from qt.tools.bench import main

if __name__ == "__main__":
    sys.exit(main())
