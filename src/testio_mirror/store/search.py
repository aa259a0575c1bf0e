"""Full-text search over test titles and goals, feature titles and descriptions, bug titles and
results (the ``search_index`` FTS5 table, kept current by triggers on every write)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from testio_mirror.store.records import SearchHit, SearchKind, SearchPage
from testio_mirror.store.sqlite.cursor import decode_position, encode_position
from testio_mirror.store.sqlite.db import Database

KINDS: tuple[SearchKind, ...] = ("test", "feature", "bug")
MAX_LIMIT = 100
SEARCH_SCOPE = "search"  # the cursors' scope (``cursor.encode_position``)
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
        return (await self.search_page(text, kinds, product_id, limit)).hits

    async def search_page(
        self,
        text: str,
        kinds: Sequence[SearchKind] | None = None,
        product_id: int | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SearchPage:
        """``limit`` matches after ``cursor``, best first, each with its product's name and, for
        a bug, its severity, status and test; none when the text holds no searchable word.

        Raises:
            CursorError: ``cursor`` is not the next_cursor of a page of search hits.
        """
        start = decode_position(cursor, SEARCH_SCOPE) if cursor else 0
        query = fts_query(text)
        chosen = [k for k in KINDS if k in (kinds or KINDS)]
        if query is None or not chosen:
            return SearchPage(hits=[], next_cursor=None, cursors=[])
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
        # Ties in rank keep one order from page to page: by kind and id.
        sql += " ORDER BY rank, kind, entity_id LIMIT ? OFFSET ?"
        params.extend((limit + 1, start))
        # Names are looked up for the page's hits only, after ranking.
        named = (
            "SELECT h.*, p.name AS product_name, b.severity, "
            "CASE h.kind WHEN 'bug' THEN b.status WHEN 'test' THEN t.status END AS status, "
            "t.id AS test_id, t.title AS test_title "
            f"FROM ({sql}) h "
            "LEFT JOIN products p ON p.id = h.product_id "
            "LEFT JOIN bugs b ON h.kind = 'bug' AND b.id = h.entity_id "
            "LEFT JOIN tests t ON t.id = CASE h.kind WHEN 'bug' THEN b.test_id "
            "WHEN 'test' THEN h.entity_id END "
            "ORDER BY h.rank, h.kind, h.entity_id"
        )
        async with self._db.reader() as conn:
            rows = list(await conn.execute_fetchall(named, params))
        hits = [
            SearchHit(
                kind=row["kind"],
                id=row["entity_id"],
                product_id=row["product_id"],
                product_name=row["product_name"],
                title=row["title"],
                status=row["status"],
                severity=row["severity"],
                test_id=row["test_id"],
                test_title=row["test_title"],
                snippet=row["snippet"],
                # bm25 to three decimals: enough to order by, shorter to read.
                rank=round(row["rank"], 3),
            )
            for row in rows[:limit]
        ]
        cursors = [encode_position(SEARCH_SCOPE, start + i + 1) for i in range(len(hits))]
        more = len(rows) > limit
        return SearchPage(hits=hits, next_cursor=cursors[-1] if more else None, cursors=cursors)
