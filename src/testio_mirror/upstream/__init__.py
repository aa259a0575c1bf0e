"""All HTTP to TestIO: the Customer API v2 client, its errors, wire models and metrics.

Start with ``CustomerApiClient``; ``errors.py`` draws every error it raises as a tree.
"""

from testio_mirror.upstream.client import BugBatch, CustomerApiClient, redacted
from testio_mirror.upstream.errors import (
    AuthError,
    BadResponseError,
    NotFoundError,
    RateLimitedError,
    RequestRejectedError,
    UpstreamError,
    UpstreamUnavailableError,
)
from testio_mirror.upstream.health import HealthReport, HealthState
from testio_mirror.upstream.metrics import RequestMetrics
from testio_mirror.upstream.models import (
    Bug,
    BugComment,
    ExploratoryTest,
    Feature,
    Product,
    Ref,
    RejectReason,
    Section,
    TestFeature,
    UserStory,
    WireModel,
    WirePart,
)
from testio_mirror.upstream.paging import TestListingPage, TestPager
from testio_mirror.upstream.retry import RetryPolicy, parse_retry_after

__all__ = [
    "AuthError",
    "BadResponseError",
    "Bug",
    "BugBatch",
    "BugComment",
    "CustomerApiClient",
    "ExploratoryTest",
    "Feature",
    "HealthReport",
    "HealthState",
    "NotFoundError",
    "Product",
    "RateLimitedError",
    "Ref",
    "RejectReason",
    "RequestMetrics",
    "RequestRejectedError",
    "RetryPolicy",
    "Section",
    "TestFeature",
    "TestListingPage",
    "TestPager",
    "UpstreamError",
    "UpstreamUnavailableError",
    "UserStory",
    "WireModel",
    "WirePart",
    "parse_retry_after",
    "redacted",
]
