"""The ``anrl-ray`` command: convert, train, search, best, evaluate, predict.

Every subcommand's module registers its own arguments; this file only wires them up and turns
:class:`anrl_ray.errors.UserError` into a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from anrl_ray.errors import UserError
from anrl_ray.runtime import quiet_environment

# (subcommand, module that provides register_cli(subparsers)), in help order.
_COMMANDS = [
    ("train", "anrl_ray.trial"),
    ("search", "anrl_ray.search"),
    ("best", "anrl_ray.export"),
    ("evaluate", "anrl_ray.export"),
    ("predict", "anrl_ray.export"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anrl-ray", description="anrl-ray: convert, train, search, best, evaluate, predict.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    convert = sub.add_parser("convert", help="convert a dataset (or generate the synthetic benchmark) to Parquet")
    conv_sub = convert.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    from anrl_ray.cli import convert as convert_cli

    convert_cli.register(conv_sub)
    registered = set()
    for _, module in _COMMANDS:
        if module not in registered:
            importlib.import_module(module).register_cli(sub)
            registered.add(module)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_environment()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except UserError as e:
        print(f"anrl-ray {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FileExistsError as e:
        print(f"anrl-ray {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
