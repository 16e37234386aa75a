"""``python -m isolate``: the same command line as ``isolate``."""

import sys

from isolate.cli.__main__ import main

sys.exit(main())
