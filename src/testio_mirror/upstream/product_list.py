"""The account's product list, asked for a second time when it would remove much of the mirror.

A product missing from the list is tombstoned, so one wrong answer (an empty list from a
deployment having a bad moment) would hide every product. A list that lacks all the products
the mirror holds, or more than ``RemovalRule.share`` of them (and at least ``minimum``), is asked
for again: when the second answer shows the same products the removal stands; when it does not,
nothing is removed, both answers' products are kept, and the caller reports it.

Example::

    listed = await confirmed_product_list(client, stored_ids, RemovalRule.from_settings(s))
    write_products(conn, listed.products, stamp, complete=listed.complete)
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from typing import TYPE_CHECKING

from testio_mirror.upstream.models import Product

if TYPE_CHECKING:
    from testio_mirror.settings import Settings
    from testio_mirror.upstream.client import CustomerApiClient


@dataclass(frozen=True, slots=True)
class RemovalRule:
    """How large a removal needs a second listing: all of what the mirror holds, or more than
    ``share`` of it when that is at least ``minimum`` items."""

    share: float = 0.5
    minimum: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> RemovalRule:
        return cls(settings.removal_confirm_share, settings.removal_confirm_minimum)

    def needs_confirming(self, removed: int, held: int) -> bool:
        if removed == 0 or held == 0:
            return False
        return removed == held or (removed >= self.minimum and removed / held > self.share)


@dataclass(frozen=True, slots=True)
class ProductList:
    """A product list to store. ``complete``: products it lacks may be tombstoned. ``warning`` or
    ``error`` says what a second listing decided (``error``: nothing removed, run partial)."""

    products: list[Product]
    complete: bool
    warning: str | None = None
    error: str | None = None


async def confirmed_product_list(
    client: CustomerApiClient, held_ids: Set[int], rule: RemovalRule
) -> ProductList:
    """The product list, listed twice when it would remove a large share of ``held_ids`` (the
    live products the mirror holds).

    Raises:
        UpstreamError: a listing failed (the first, or the second one asked to confirm).
    """
    first = await client.products()
    removed = held_ids - {p.id for p in first}
    if not rule.needs_confirming(len(removed), len(held_ids)):
        return ProductList(first, complete=True)
    second = await client.products()
    if {p.id for p in second} == {p.id for p in first}:
        return ProductList(
            second,
            complete=True,
            warning=(
                f"products: the product list lacks {len(removed)} of the {len(held_ids)} "
                "products the mirror holds; a second listing agreed, so they are marked removed"
            ),
        )
    kept = {p.id: p for p in first} | {p.id: p for p in second}
    return ProductList(
        list(kept.values()),
        complete=False,
        error=(
            f"products: the product list lacked {len(removed)} of the {len(held_ids)} products "
            f"the mirror holds and a second listing disagreed ({len(first)} products, then "
            f"{len(second)}); nothing was removed, and the next sync lists them again"
        ),
    )
