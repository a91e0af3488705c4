"""`python -m carrier_cli`, and the `carrier` command ([project.scripts] names `run`)."""


def run() -> None:
    from carrier_cli import startup_gc

    startup_gc.pause()  # before the command's imports: see carrier_cli/startup_gc.py
    from carrier_cli.cli.app import main

    main()


if __name__ == "__main__":
    run()
