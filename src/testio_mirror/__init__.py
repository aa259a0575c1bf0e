"""testio-mirror: a local SQLite mirror of a TestIO account, served to LLM agents over MCP."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("testio-mirror")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
