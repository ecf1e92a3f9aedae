"""``python -m essa`` is the ``essa`` command."""

from .cli import main

main()
