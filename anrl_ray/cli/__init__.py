"""The ``anrl-ray`` command: convert, train, search, best, evaluate, predict.

Every subcommand's parser and handler lives in this package (``convert``, ``run``, ``results``);
handlers are thin and call library functions. :class:`anrl_ray.errors.UserError` becomes a
one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from anrl_ray.errors import UserError
from anrl_ray.runtime import quiet_environment


def build_parser() -> argparse.ArgumentParser:
    from anrl_ray.cli import convert, results, run
    from anrl_ray.cli import table

    parser = argparse.ArgumentParser(prog="anrl-ray", description="anrl-ray: convert, train, search, best, evaluate, predict.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    conv = sub.add_parser("convert", help="convert a dataset (or generate the synthetic benchmark) to Parquet")
    convert.register(conv.add_subparsers(dest="dataset", required=True, metavar="DATASET"))
    run.register(sub)
    results.register(sub)
    table.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_environment()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (UserError, FileExistsError) as e:
        print(f"anrl-ray {args.command}: error: {e}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
