"""One module per `qjoule` subcommand.

Each module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`, and keeps
heavy imports (torch, amaranth) inside `run` so `qjoule --help` stays fast. The CLI discovers the
modules here; adding a command means adding a module, nothing else.
"""
