"""`python -m idp`: the operator's command line, as the `idp` script runs it."""

from idp.cli import main

main()
