"""`python -m crossfuse` runs the command line."""

from crossfuse.cli import main

main()
