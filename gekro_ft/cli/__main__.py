from gekro_ft.cli import main

main()
