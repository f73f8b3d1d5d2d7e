"""The console script and ``python -m batchdigits``.

:func:`main` records SIGINT and SIGTERM before anything else is imported (Typer, Rich,
TensorFlow), so a stop at any moment of start-up ends the documented way (exit 130 or
143, the previous output kept) instead of killing the process mid-import; then it runs
the command line (:func:`batchdigits.cli.process.main`).
"""


def main() -> None:
    from batchdigits.stops import record_signals

    record_signals()
    from batchdigits.cli.process import main as run_command_line

    run_command_line()


if __name__ == "__main__":
    main()
