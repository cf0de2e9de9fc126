"""``python -m minigun``: the CLI; this is how the runner starts its child."""

from minigun.cli import main

if __name__ == "__main__":
    main()
