from carrier_cli import startup_gc

startup_gc.pause()  # before the imports: see carrier_cli/startup_gc.py

from carrier_cli.cli.app import main  # noqa: E402

main()
