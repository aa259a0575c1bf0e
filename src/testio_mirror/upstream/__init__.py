"""All HTTP to TestIO: the Customer API v2 client, its errors, wire models and metrics.

Start with ``client.CustomerApiClient``; ``errors.py`` draws every error it raises as a tree. The
package itself imports nothing, so its errors and models load without httpx.
"""
