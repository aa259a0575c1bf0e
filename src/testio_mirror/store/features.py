"""Features (with their user stories) of each product."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiosqlite

from testio_mirror.store.products import write_products
from testio_mirror.store.readthrough.repository import ReadThroughRepository, removed
from testio_mirror.store.readthrough.rule import Local, read_through
from testio_mirror.store.records import Answer, FeatureRecord, Page
from testio_mirror.store.sqlite.cursor import decode_position, id_page
from testio_mirror.store.sqlite.timefmt import from_db, required_from_db
from testio_mirror.store.sqlite.upsert import (
    WriteStats,
    canonical_json,
    content_hash,
    tombstone_missing,
    upsert,
)
from testio_mirror.upstream.models import Feature

FEATURE_COLUMNS = (
    "id",
    "product_id",
    "title",
    "description",
    "howtofind",
    "user_stories",
    "raw",
    "content_hash",
)


def _row(product_id: int, feature: Feature) -> tuple[Any, ...]:
    return (
        feature.id,
        product_id,
        feature.title,
        feature.description,
        feature.howtofind,
        json.dumps(feature.user_stories, ensure_ascii=False),
        canonical_json(feature.raw),
        content_hash(feature.raw, product_id),
    )


async def write_features(
    conn: aiosqlite.Connection, product_id: int, features: Sequence[Feature], fetched_at: str
) -> WriteStats:
    """Store the complete feature list of a product; features missing from it are tombstoned."""
    rows = [_row(product_id, f) for f in features]
    stats, _ = await upsert(conn, "features", FEATURE_COLUMNS, rows, fetched_at)
    stats.deleted = await tombstone_missing(
        conn, "features", [f.id for f in features], fetched_at, scope=("product_id", [product_id])
    )
    await conn.execute(
        "UPDATE products SET features_fetched_at = ? WHERE id = ?", (fetched_at, product_id)
    )
    return stats


def _record(row: aiosqlite.Row) -> FeatureRecord:
    return FeatureRecord(
        id=row["id"],
        product_id=row["product_id"],
        title=row["title"],
        description=row["description"],
        howtofind=row["howtofind"],
        user_stories=json.loads(row["user_stories"]),
        deleted=row["deleted_at"] is not None,
        fetched_at=required_from_db(row["fetched_at"]),
    )


class FeatureRepository(ReadThroughRepository):
    """Features by product."""

    async def list_features(
        self, product_id: int, include_deleted: bool = False
    ) -> Answer[list[FeatureRecord]]:
        """A product's features, read through when missing or stale.

        Raises:
            NotFoundError: TestIO does not know the product.
            RemovedError: the product left the account (the mirror holds it as a tombstone).
        """
        return await read_through(
            ("features", product_id),
            self._policy,
            self._flights,
            lambda: self._load(product_id, include_deleted),
            self._online(lambda: self._refresh(product_id)),
            gate=self._gate,
        )

    async def page_features(
        self, product_id: int, *, limit: int, cursor: str | None = None
    ) -> Page[FeatureRecord]:
        """``limit`` of a product's features after ``cursor``, by id, read through as
        ``list_features``.

        Raises:
            CursorError: ``cursor`` is not the next_cursor of a page of this product's features.
            NotFoundError: TestIO does not know the product.
        """
        scope = f"features:{product_id}"
        after = decode_position(cursor, scope) if cursor else 0
        answer = await read_through(
            ("features", product_id),
            self._policy,
            self._flights,
            lambda: self._load(product_id, False, after, limit + 1),
            self._online(lambda: self._refresh(product_id)),
        )
        return id_page(answer, limit, scope)

    async def fetched_at(self, product_ids: Sequence[int]) -> dict[int, datetime | None]:
        """When each of these products' features were last fetched (None: never); products
        the mirror does not hold are left out."""
        async with self._db.reader() as conn:
            rows = await conn.execute_fetchall(
                "SELECT id, features_fetched_at FROM products "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(product_ids)),),
            )
        return {row[0]: from_db(row[1]) for row in rows}

    async def _load(
        self, product_id: int, include_deleted: bool, after: int = 0, limit: int = -1
    ) -> Local[list[FeatureRecord]] | None:
        # Features with an id above ``after``; ``limit`` -1 is SQLite's "no limit".
        async with self._db.reader() as conn:
            marks = list(
                await conn.execute_fetchall(
                    "SELECT features_fetched_at, deleted_at FROM products WHERE id = ?",
                    (product_id,),
                )
            )
            if marks and marks[0][1] is not None:
                # Not asked of TestIO: it left the account; a sync brings it back if it returns.
                raise removed(f"product {product_id}")
            if not marks or marks[0][0] is None:
                return None
            rows = await conn.execute_fetchall(
                "SELECT * FROM features WHERE product_id = ? AND id > ?"
                + ("" if include_deleted else " AND deleted_at IS NULL")
                + " ORDER BY id LIMIT ?",
                (product_id, after, limit),
            )
        return Local([_record(r) for r in rows], from_db(marks[0][0]), self._policy.product_ttl)

    async def _refresh(self, product_id: int) -> None:
        assert self._client is not None
        product = await self._client.product(product_id)
        features = await self._client.features(product)
        fetched_at = self._policy.stamp()
        async with self._db.transaction() as conn:
            await write_products(conn, [product], fetched_at, complete=False)
            await write_features(conn, product_id, features, fetched_at)
