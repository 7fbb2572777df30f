"""``python -m simsys`` is the ``simsys`` command."""

from simsys.cli import main

if __name__ == "__main__":
    main()
