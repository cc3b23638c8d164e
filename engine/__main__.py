"""``python -m aidsafe``: the same CLI as the ``aidsafe`` console script."""

from aidsafe.cli import main

if __name__ == "__main__":
    main()
