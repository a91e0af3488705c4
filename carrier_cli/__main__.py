from carrier_cli.cli.app import main

main()
