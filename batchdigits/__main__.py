"""``python -m batchdigits``."""

from batchdigits.cli import main

main()
