from stampline.cli import main

main()
