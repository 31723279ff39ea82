"""`python -m streams.cli ...`: the `codeclm` command (the demo and the tests start workers so)."""

import sys

from streams.cli import main

sys.exit(main())
