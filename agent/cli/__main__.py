"""``python -m agent.cli``: the same as the ``punchgate`` command."""

from agent.cli import main

main()
