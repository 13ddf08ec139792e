"""``python -m andromede``."""

from andromede.cli.main import main

main()
