"""The subcommands, in the order `cnnlab --help` lists them. Each module declares NAME, HELP,
`add_arguments(parser)` and `run(args) -> int`, and imports what it runs only inside `run`; adding a command
is one module and one line here."""

from cnnlab.cli.commands import (
    bench,
    bottleneck,
    compare,
    depth,
    evaluate,
    export,
    models,
    overfit,
    params,
    pool,
    predict,
    serve,
    shape,
    summary,
    train,
    viz,
)

COMMANDS = (
    train,
    evaluate,
    models,
    summary,
    shape,
    params,
    bottleneck,
    pool,
    compare,
    depth,
    overfit,
    viz,
    predict,
    export,
    serve,
    bench,
)
