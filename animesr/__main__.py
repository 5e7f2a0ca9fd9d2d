from animesr.cli import main

main()
