"""`python -m llm.double ...`: serve the LLM double (see cli.py for the flags)."""

import sys

from llm.double.cli import main

sys.exit(main())
