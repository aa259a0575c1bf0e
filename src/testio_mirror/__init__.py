"""testio-mirror: a local SQLite mirror of a TestIO account, served to LLM agents over MCP."""

# The one place the version is written (pyproject.toml reads it from here): a constant, because
# asking importlib.metadata would cost a noticeable part of every start of the command.
__version__ = "0.1.0"

__all__ = ["__version__"]
