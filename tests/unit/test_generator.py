"""The generator: deterministic, and its ground truth agrees with the files it wrote."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from common.generator import GeneratorConfig, generate_batch


def _digest(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.csv")):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    config = GeneratorConfig(items=3000, parts=3, seed=5, defect_rate=0.05)
    generate_batch(tmp_path / "a", config)
    generate_batch(tmp_path / "b", config)
    generate_batch(tmp_path / "c", GeneratorConfig(items=3000, parts=3, seed=6, defect_rate=0.05))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_ground_truth_rows_read_match_the_files_and_split_into_parts(tmp_path: Path) -> None:
    truth = generate_batch(tmp_path, GeneratorConfig(items=3000, parts=3, seed=5, defect_rate=0.05))
    for name, expected in truth["datasets"].items():
        parts = sorted((tmp_path / name).glob("part-*.csv"))
        lines = sum(len(p.read_bytes().splitlines()) - 1 for p in parts)  # minus each header
        assert lines == expected["rows_read"], name
        assert expected["rows_read"] == (
            expected["rows_valid"]
            + expected["rows_quarantined"]
            + expected["rows_parked"]
            + expected["duplicates_collapsed"]
        )
    assert len(list((tmp_path / "order_items").glob("part-*.csv"))) == 3
    items = truth["datasets"]["order_items"]
    assert (
        items["rows_read"] - items["duplicates_collapsed"] - items["rule_counts"].get("duplicate_key", 0) // 2
        == 3000
    )


def test_generate_upload_stages_the_landing_zone_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.generate import main

    assert (
        main(["--items", "40", "--parts", "2", "--batch-id", "up-1", "--upload", str(tmp_path / "zone")]) == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    manifest_path = tmp_path / "zone" / "manifests" / "up-1.json"
    assert report["manifest"] == str(manifest_path) and report["out"] is None
    manifest = json.loads(manifest_path.read_text())
    assert manifest["batch_id"] == "up-1"
    assert manifest["files"]["orders"] == [
        str(tmp_path / "zone" / "raw" / "orders" / "up-1" / f"part-0000{i}.csv") for i in range(2)
    ]
    for uris in manifest["files"].values():
        assert all(Path(uri).is_file() and Path(uri).read_text().count("\n") > 1 for uri in uris)


def test_generate_needs_somewhere_to_write(capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.generate import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--items", "10"])
    assert exit_info.value.code == 2
    assert "--out DIR, --upload URI" in capsys.readouterr().err


def test_orders_fall_in_the_date_window_asked_for(tmp_path: Path) -> None:
    """A day's batch (as the benchmark's steady-state row makes): every order on the days asked for."""
    from jobs.generate import main

    args = ["--out", str(tmp_path), "--items", "600", "--parts", "1", "--clean", "--first-day", "729"]
    assert main([*args, "--days", "2"]) == 0
    with (tmp_path / "orders" / "part-00000.csv").open(newline="") as handle:
        days = {row["created_at"][:10] for row in csv.DictReader(handle)}
    assert days == {"2025-12-30", "2025-12-31"}  # 2024-01-01 + 729 days, and the day after


def test_corrections_are_new_versions_of_earlier_records_and_leave_the_rest_alone(tmp_path: Path) -> None:
    """A day's batch with corrections (as the benchmark's lake-growth rows make): earlier orders
    re-delivered as Returned on the batch's day, earlier products with a new price, at ids drawn
    from the whole earlier range; every other row is what the seed gives without them."""
    from jobs.generate import main

    common = ["--items", "400", "--parts", "1", "--clean", "--first-day", "730", "--days", "1"]
    ids = ["--first-order-id", "5001", "--first-item-id", "9001", "--first-product-id", "801"]
    assert main(["--out", str(tmp_path / "plain"), *common, *ids]) == 0
    fixes = ["--order-corrections", "300", "--product-corrections", "40"]
    assert main(["--out", str(tmp_path / "fixed"), *common, *ids, *fixes]) == 0
    for name in ("orders", "order_items", "products"):
        assert (tmp_path / "plain" / name / "part-00000.csv").read_bytes() == (
            tmp_path / "fixed" / name / "part-00000.csv"
        ).read_bytes(), name
    with (tmp_path / "fixed" / "orders" / "part-corrections-orders.csv").open(newline="") as handle:
        orders = list(csv.DictReader(handle))
    keys = [int(r["order_id"]) for r in orders]
    assert len(set(keys)) == 300 and all(1 <= k < 5001 for k in keys)
    assert min(keys) < 500 and max(keys) > 4500  # spread over the earlier ids, not the newest only
    assert {r["status"] for r in orders} == {"Returned"}
    assert {r["created_at"][:10] for r in orders} == {"2025-12-31"}
    with (tmp_path / "fixed" / "products" / "part-corrections-products.csv").open(newline="") as handle:
        products = [int(r["id"]) for r in csv.DictReader(handle)]
    assert len(set(products)) == 40 and all(1 <= k < 801 for k in products)
    truth = json.loads((tmp_path / "fixed" / "ground_truth.json").read_text())["datasets"]
    plain = json.loads((tmp_path / "plain" / "ground_truth.json").read_text())["datasets"]
    assert truth["orders"]["rows_valid"] == plain["orders"]["rows_valid"] + 300
    assert truth["products"]["rows_valid"] == plain["products"]["rows_valid"] + 40
    manifest = json.loads((tmp_path / "fixed" / "manifest.json").read_text())
    assert any(p.endswith("part-corrections-orders.csv") for p in manifest["files"]["orders"])


def test_corrections_need_earlier_ids(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from jobs.generate import main

    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--order-corrections", "5"])  # --first-order-id 1: none earlier
    assert "--order-corrections N needs N earlier ids" in capsys.readouterr().err
