"""The ``batchdigits`` command line: a thin layer over the library. Each command parses
its options, calls one library function through :func:`~batchdigits.cli.exits.run`
(errors into messages and exit codes, in one place) and prints its summary. Nothing
heavy is imported at module level, so ``--help`` and argument errors are instant.

- :mod:`~batchdigits.cli.app`: the Typer app, the stderr console, ``--version``
- :mod:`~batchdigits.cli.predict`, :mod:`~batchdigits.cli.evaluation`,
  :mod:`~batchdigits.cli.training`, :mod:`~batchdigits.cli.web`: the commands
- :mod:`~batchdigits.cli.exits`, :mod:`~batchdigits.cli.signals`: errors and signals
- :mod:`~batchdigits.cli.process`: the console script's ``main``
"""

# isort: off
# Each import registers its commands, in the order --help lists them.
from batchdigits.cli import predict, evaluation, training, web  # noqa: F401

# isort: on
from batchdigits.cli.app import app
from batchdigits.cli.process import end_process, main

__all__ = ["app", "end_process", "main"]
