"""Products and their sections: writes from sync, reads with read-through."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import aiosqlite

from testio_mirror.store.readthrough.repository import ReadThroughRepository, live
from testio_mirror.store.readthrough.rule import Local, read_through
from testio_mirror.store.records import Answer, Page, ProductRecord
from testio_mirror.store.sqlite.cursor import decode_position, id_page
from testio_mirror.store.sqlite.idlists import ids_from_group_concat
from testio_mirror.store.sqlite.timefmt import from_db, required_from_db
from testio_mirror.store.sqlite.upsert import (
    WriteStats,
    canonical_json,
    content_hash,
    mark_collection_fetched,
    tombstone_missing,
    upsert,
)
from testio_mirror.upstream.models import Product, Section
from testio_mirror.upstream.product_list import confirmed_product_list

logger = logging.getLogger("testio_mirror.store")

PRODUCT_COLUMNS = (
    "id",
    "name",
    "description",
    "type",
    "default_section_id",
    "has_sections",
    "raw",
    "content_hash",
)
SECTION_COLUMNS = ("id", "product_id", "name", "is_default", "raw", "content_hash")
PRODUCTS_COLLECTION = "products"


def _product_row(product: Product) -> tuple[Any, ...]:
    return (
        product.id,
        product.name,
        product.description,
        product.type,
        product.default_section_id,
        int(product.has_sections),
        canonical_json(product.raw),
        content_hash(product.raw),
    )


def _section_rows(product: Product) -> list[tuple[Any, ...]]:
    # Sections are parts of the product: each one's JSON is the matching item of the product's
    # raw list (validation keeps the lists' order and length).
    sections: dict[int, tuple[Section, dict[str, Any]]] = {}
    for key, parsed in (
        ("sections_with_default", product.sections_with_default),
        ("sections", product.sections),
    ):
        for section, data in zip(parsed, product.raw.get(key) or [], strict=True):
            sections[section.id] = (section, data)
    return [
        (
            section.id,
            product.id,
            section.name,
            int(section.id == product.default_section_id),
            canonical_json(data),
            content_hash(data, product.id),
        )
        for section, data in sections.values()
    ]


async def write_products(
    conn: aiosqlite.Connection, products: Sequence[Product], fetched_at: str, *, complete: bool
) -> WriteStats:
    """Store products (and their sections). ``complete``: this is the whole product list, so
    products missing from it are tombstoned."""
    stats, _ = await upsert(
        conn, "products", PRODUCT_COLUMNS, [_product_row(p) for p in products], fetched_at
    )
    for product in products:
        await upsert(conn, "sections", SECTION_COLUMNS, _section_rows(product), fetched_at)
    if complete:
        stats.deleted = await tombstone_missing(
            conn, "products", [p.id for p in products], fetched_at
        )
        await mark_collection_fetched(conn, PRODUCTS_COLLECTION, fetched_at)
    return stats


# A product's sections ride along with its row (one statement, one trip to the reader's thread).
_PRODUCT_WITH_SECTIONS = (
    "SELECT *, (SELECT group_concat(id) FROM sections WHERE product_id = products.id "
    "AND deleted_at IS NULL AND is_default = 0) AS section_ids FROM products"
)


def _record(row: aiosqlite.Row) -> ProductRecord:
    return ProductRecord(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        type=row["type"],
        has_sections=bool(row["has_sections"]),
        section_ids=ids_from_group_concat(row["section_ids"]),
        deleted=row["deleted_at"] is not None,
        fetched_at=required_from_db(row["fetched_at"]),
    )


class ProductRepository(ReadThroughRepository):
    """Products of the account."""

    async def list_products(self, include_deleted: bool = False) -> Answer[list[ProductRecord]]:
        """Every product, read through when the product list is missing or stale."""
        return await read_through(
            ("products",),
            self._policy,
            self._flights,
            lambda: self._load_all(include_deleted),
            self._online(self._refresh_all),
            gate=self._gate,
        )

    async def page_products(self, *, limit: int, cursor: str | None = None) -> Page[ProductRecord]:
        """``limit`` products after ``cursor``, by id, read through as ``list_products``.

        Raises:
            CursorError: ``cursor`` is not the next_cursor of a page of products.
            OfflineError, UpstreamError: as ``read_through``.
        """
        after = decode_position(cursor, PRODUCTS_COLLECTION) if cursor else 0
        answer = await read_through(
            ("products",),
            self._policy,
            self._flights,
            lambda: self._load_all(False, after, limit + 1),
            self._online(self._refresh_all),
        )
        return id_page(answer, limit, PRODUCTS_COLLECTION)

    async def get_product(self, product_id: int) -> Answer[ProductRecord]:
        """One product.

        Raises:
            NotFoundError: TestIO does not know the product (a mirrored copy is tombstoned).
            RemovedError: the mirror holds the product only as a tombstone.
        """
        answer = await read_through(
            ("product", product_id),
            self._policy,
            self._flights,
            lambda: self._load_one(product_id),
            self._online(lambda: self._refresh_one(product_id)),
            on_gone=lambda: self._tombstone("products", product_id),
            gate=self._gate,
        )
        return live(answer, f"product {product_id}")

    async def known_ids(self) -> list[int]:
        """Ids of the products in the mirror that are not tombstoned."""
        async with self._db.reader() as conn:
            rows = await conn.execute_fetchall(
                "SELECT id FROM products WHERE deleted_at IS NULL ORDER BY id"
            )
        return [int(row[0]) for row in rows]

    async def stored_products(self) -> list[Product]:
        """The products in the mirror that are not tombstoned, as TestIO sent them, by id."""
        async with self._db.reader() as conn:
            rows = await conn.execute_fetchall(
                "SELECT raw FROM products WHERE deleted_at IS NULL ORDER BY id"
            )
        return [Product.from_wire(json.loads(row[0])) for row in rows]

    async def _load_all(
        self, include_deleted: bool, after: int = 0, limit: int = -1
    ) -> Local[list[ProductRecord]] | None:
        # Products with an id above ``after``; ``limit`` -1 is SQLite's "no limit".
        async with self._db.reader() as conn:
            fetched = list(
                await conn.execute_fetchall(
                    "SELECT fetched_at FROM collection_fetches WHERE key = ?",
                    (PRODUCTS_COLLECTION,),
                )
            )
            if not fetched:
                return None
            rows = await conn.execute_fetchall(
                _PRODUCT_WITH_SECTIONS
                + " WHERE id > ?"
                + ("" if include_deleted else " AND deleted_at IS NULL")
                + " ORDER BY id LIMIT ?",
                (after, limit),
            )
        records = [_record(row) for row in rows]
        return Local(records, from_db(fetched[0][0]), self._policy.product_ttl)

    async def _load_one(self, product_id: int) -> Local[ProductRecord] | None:
        async with self._db.reader() as conn:
            rows = list(
                await conn.execute_fetchall(f"{_PRODUCT_WITH_SECTIONS} WHERE id = ?", (product_id,))
            )
        if not rows:
            return None
        record = _record(rows[0])
        return Local(record, record.fetched_at, self._policy.product_ttl)

    async def _refresh_all(self) -> None:
        assert self._client is not None
        held = set(await self.known_ids())
        listed = await confirmed_product_list(self._client, held, self._policy.removal)
        for note in (listed.warning, listed.error):
            if note is not None:
                logger.warning("read-through %s", note)
        fetched_at = self._policy.stamp()
        async with self._db.transaction() as conn:
            await write_products(conn, listed.products, fetched_at, complete=listed.complete)

    async def _refresh_one(self, product_id: int) -> None:
        assert self._client is not None
        product = await self._client.product(product_id)
        fetched_at = self._policy.stamp()
        async with self._db.transaction() as conn:
            await write_products(conn, [product], fetched_at, complete=False)
