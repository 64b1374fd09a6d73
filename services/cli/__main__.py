"""`python -m services.cli` is the `newsflow` command."""

from services.cli.main import main

main()
