"""`python -m quark …` (and `torchrun -m quark …`) runs the CLI."""

from quark.commands import main

main()
