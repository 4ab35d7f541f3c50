"""``python -m chordflow``: the same as the ``chordflow`` command."""

from chordflow.cli.main import main

main()
