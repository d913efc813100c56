from icmkit.cli.main import main

main()
