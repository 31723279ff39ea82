"""One module per `codeclm` subcommand. Each has `register(subparsers)`, which adds its parser
and sets `func`; `streams.cli` finds the modules here by itself, in alphabetical order."""
