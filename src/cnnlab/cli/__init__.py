"""Command-line interface: parse the arguments, then run one subcommand (cli/commands/, one module each) behind
one error boundary.

Commands import what they run only when they run, so that `cnnlab shape` does not pay for onnxruntime,
FastAPI and matplotlib.
"""

import sys
import traceback

from cnnlab import CnnlabError
from cnnlab.cli.commands import COMMANDS
from cnnlab.cli.options import DATA_EPILOG, Parser, VersionAction

__all__ = ["build_parser", "cli_reference", "main"]


def build_parser() -> Parser:
    parser = Parser(
        prog="cnnlab",
        description="Convolutional networks on MNIST-style images, after the lecture.",
        epilog=DATA_EPILOG,
    )
    parser.add_argument(
        "--version",
        action=VersionAction,
        help="show the versions of cnnlab, torch, onnxruntime and Python, and the device, and exit",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, help=command.HELP)
        command.add_arguments(p)
        p.set_defaults(handler=command.run)
    parser.commands = sub.choices
    return parser


def cli_reference() -> str:
    """docs/cli.md: every command's --help, as the parser prints it (`make docs` writes it; a test compares)."""
    parser = build_parser()
    parts = [
        "# CLI reference",
        "",
        "Generated from the parser by `make docs`; `cnnlab COMMAND --help` prints the same.",
        "",
        "```",
        parser.format_help().rstrip(),
        "```",
    ]
    for name, command in parser.commands.items():
        parts += ["", f"## cnnlab {name}", "", "```", command.format_help().rstrip(), "```"]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except CnnlabError as e:
        if args.debug:
            traceback.print_exc()
        if str(e):  # empty: a DDP rank stopping with rank 0, which said why
            print(f"cnnlab {args.command}: {'' if hasattr(e, 'exit_code') else 'error: '}{e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    except BrokenPipeError:  # output piped into head and the like
        return 0
    except KeyboardInterrupt:
        print(f"cnnlab {args.command}: interrupted", file=sys.stderr)
        return 130
