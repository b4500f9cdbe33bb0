from edge_sealant.cli import main

if __name__ == "__main__":  # spawned workers (serve --workers) import this module again
    main()
