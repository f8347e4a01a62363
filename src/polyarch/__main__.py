from polyarch.cli.main import main

main()
