"""The ``testio-mirror`` command: ``main`` parses, one module per command family runs."""
