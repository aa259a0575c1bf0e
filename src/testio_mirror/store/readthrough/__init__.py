"""The read-through machinery the repositories share: the rule, freshness, single flight, the base
repository."""
