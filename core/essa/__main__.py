"""``python -m essa`` is the ``essa`` command."""

from essa.cli import main

main()
