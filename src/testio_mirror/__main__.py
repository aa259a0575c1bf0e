"""``python -m testio_mirror``: the same commands as the ``testio-mirror`` script."""

from testio_mirror.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
