"""What a tool's answer should hold, worked out from the sandbox's snapshot: times, order,
sections, and the words the search index finds."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Any

JSON = dict[str, Any]
_WORD = re.compile(r"\w+", re.UNICODE)


def parse_time(text: str) -> datetime:
    """A time as the sandbox or an answer writes it ("Z" or an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def newest_first(items: Iterable[JSON], field: str) -> list[JSON]:
    """Items ordered as the mirror pages them: by ``field`` (a time) then id, newest first."""
    return sorted(items, key=lambda i: (parse_time(i[field]), i["id"]), reverse=True)


def has_sections(product: JSON) -> bool:
    """The API's rule: sections, or more than the default section."""
    return bool(product["sections"]) or len(product["sections_with_default"]) > 1


def words(text: str | None) -> list[str]:
    """Lower-cased words without diacritics, as the search index tokenizes them."""
    plain = unicodedata.normalize("NFKD", text or "")
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return [w.lower() for w in _WORD.findall(plain)]


def bug_matches(bug: JSON, query: list[str]) -> bool:
    """Does the search index find ``bug`` for these words (each a prefix of a word in its title
    or results)?"""
    tokens = words(bug["title"]) + words(bug["actual_result"]) + words(bug["expected_result"])
    return all(any(t.startswith(q) for t in tokens) for q in query)
