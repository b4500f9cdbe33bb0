from edge_sealant.cli import main

main()
