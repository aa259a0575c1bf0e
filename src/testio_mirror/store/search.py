"""Full-text search over test titles and goals, feature titles and descriptions, bug titles and
results (the ``search_index`` FTS5 table, kept current by triggers on every write)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from testio_mirror.store.records import SearchHit, SearchKind
from testio_mirror.store.sqlite.db import Database

KINDS: tuple[SearchKind, ...] = ("test", "feature", "bug")
MAX_LIMIT = 100
_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str | None:
    """A safe FTS5 query from what a person typed: every word must appear (as a prefix), and no
    FTS syntax (quotes, NEAR, column filters, ``*``) from the input is interpreted. None when the
    text holds no word at all."""
    # NFC first: "é" typed as "e" plus a combining accent would split the word in two.
    words = _WORD.findall(unicodedata.normalize("NFC", text))
    if not words:
        return None
    return " ".join(f'"{word}"*' for word in words[:32])


class SearchRepository:
    """Ranked full-text search across tests, features and bugs."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def search(
        self,
        text: str,
        kinds: Sequence[SearchKind] | None = None,
        product_id: int | None = None,
        limit: int = 20,
    ) -> list[SearchHit]:
        """Best matches first; an empty list when the text holds no searchable word."""
        query = fts_query(text)
        if query is None:
            return []
        chosen = [k for k in KINDS if k in (kinds or KINDS)]
        if not chosen:
            return []
        limit = max(1, min(limit, MAX_LIMIT))
        params: list[Any] = [query]
        sql = (
            "SELECT kind, entity_id, product_id, title, "
            "snippet(search_index, -1, '[', ']', '…', 12) AS snippet, "
            # Weights per column (kind, entity_id, product_id, title, body): a word in the title
            # counts ten times one in the body.
            "bm25(search_index, 0.0, 0.0, 0.0, 10.0, 1.0) AS rank "
            "FROM search_index WHERE search_index MATCH ?"
        )
        if len(chosen) < len(KINDS):
            # Filtering on the kind reads it for every match: only when it leaves some out.
            sql += f" AND kind IN ({','.join('?' * len(chosen))})"
            params.extend(chosen)
        if product_id is not None:
            sql += " AND product_id = ?"
            params.append(product_id)
        sql += " ORDER BY rank LIMIT ?"
        params.append(limit)
        async with self._db.reader() as conn:
            rows = await conn.execute_fetchall(sql, params)
        return [
            SearchHit(
                kind=row["kind"],
                id=row["entity_id"],
                product_id=row["product_id"],
                title=row["title"],
                snippet=row["snippet"],
                rank=row["rank"],
            )
            for row in rows
        ]
