"""Is the mirror exactly what the sandbox holds? Ids, owners and content, entity by entity."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from testio_mirror.sandbox import SandboxWorld


def _without_product(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k != "product"}


def mirror_differences(database: Path, world: SandboxWorld, *, bugs: bool = False) -> list[str]:
    """Every way the mirror at ``database`` differs from the sandbox; empty when equal.

    Tests are compared without ``product`` (listings leave it out) but with their owner."""
    truth = world.snapshot()
    problems: list[str] = []
    with sqlite3.connect(database) as conn:

        def live(table: str, extra: str = "") -> dict[int, tuple[Any, ...]]:
            rows = conn.execute(
                f"SELECT id, raw{extra} FROM {table} WHERE deleted_at IS NULL"  # noqa: S608
            ).fetchall()
            return {row[0]: row for row in rows}

        products = live("products")
        if set(products) != set(truth["products"]):
            problems.append(f"products differ: {sorted(products)} != {sorted(truth['products'])}")
        for pid, product in truth["products"].items():
            if pid in products and json.loads(products[pid][1]) != product:
                problems.append(f"product {pid} content differs")
        features = live("features", ", product_id")
        wanted_features = {
            fid: (pid, f) for pid, feats in truth["features"].items() for fid, f in feats.items()
        }
        if set(features) != set(wanted_features):
            problems.append("feature ids differ")
        for fid, (pid, feature) in wanted_features.items():
            row = features.get(fid)
            if row is not None and (row[2] != pid or json.loads(row[1]) != feature):
                problems.append(f"feature {fid} differs")
        tests = live("tests", ", product_id")
        if set(tests) != set(truth["tests"]):
            missing = sorted(set(truth["tests"]) - set(tests))[:10]
            extra = sorted(set(tests) - set(truth["tests"]))[:10]
            problems.append(f"test ids differ: missing {missing}, extra {extra}")
        for tid, test in truth["tests"].items():
            row = tests.get(tid)
            if row is None:
                continue
            if row[2] != test["product"]["id"]:
                problems.append(f"test {tid} is filed under {row[2]}, not {test['product']['id']}")
            if _without_product(json.loads(row[1])) != _without_product(test):
                problems.append(f"test {tid} content differs")
        if bugs:
            stored = live("bugs")
            if set(stored) != set(truth["bugs"]):
                problems.append(
                    f"bug ids differ: {len(stored)} stored, {len(truth['bugs'])} upstream"
                )
            for bid, bug in truth["bugs"].items():
                if bid in stored and json.loads(stored[bid][1]) != bug:
                    problems.append(f"bug {bid} content differs")
    return problems[:50]
