"""The `qjoule` command line: discovers the subcommands in qjoule.commands."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys
import threading

from . import __version__, commands
from .errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit with code 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qjoule", description="Minimum-energy quantized neural networks, from training to a bitstream.")
    parser.add_argument("--version", action="version", version=f"qjoule {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        name = getattr(module, "NAME", info.name.replace("_", "-"))
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so it unwinds as Ctrl-C does: staged output is
    removed and running tools are stopped (hw/synth.py)."""


def _terminate(signum, frame):
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return int(args._run(args) or 0)
    except UserError as e:
        print(f"qjoule: error: {e}", file=sys.stderr)
        return e.exit_code
    except _Terminated:
        print("qjoule: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("qjoule: interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
