"""Run the command line as `python -m leadflow.cli`."""

from leadflow.cli import main

main()
