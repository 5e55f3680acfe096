"""``python -m ratewarden``: the same as the ``ratewarden`` command."""

from .entry import main

main()
