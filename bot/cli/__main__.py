"""`python -m bot.cli`: the same commands as the `soracast` console script."""

import sys

from bot.cli import main

sys.exit(main())
