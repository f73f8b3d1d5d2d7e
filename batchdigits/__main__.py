"""``python -m batchdigits``."""

from .cli import main

main()
