"""``python -m isolate``: the same command line as ``isolate``."""

import sys

from isolate.cli.__main__ import script

sys.exit(script())
