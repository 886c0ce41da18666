"""Allow ``python -m node`` as an alias of the ``taxii-node`` console script."""

from node.cli import main

if __name__ == "__main__":
    main()
