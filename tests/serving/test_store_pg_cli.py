"""The command line on a PostgreSQL store: ``seqrec export-events URL`` and ``seqrec train --from-store URL``,
whose model, served on the same database, adds to histories only the events stored after its training."""

from __future__ import annotations

import polars as pl

from seqrec.serving.stores import open_store, same_store, store_identity


def test_the_store_a_mark_names(pg_url, tmp_path) -> None:
    secret = pg_url.replace("seqrec@", "seqrec:hunter2@")
    assert "hunter2" not in store_identity(secret) and store_identity(secret) == store_identity(pg_url)
    with open_store(pg_url) as store, open_store(tmp_path / "e.db") as file:
        assert same_store(store_identity(pg_url), store) and not same_store(store_identity(pg_url), file)
        assert same_store(store_identity(tmp_path / "e.db"), file) and not same_store(
            store_identity(tmp_path / "e.db"), store
        )


def test_export_and_retrain_from_a_postgresql_store(pg_url, tmp_path, cli) -> None:
    from seqrec.models.folder import load_folder
    from seqrec.serving.live import live_history
    from seqrec.serving.recommender import Recommender

    csv = tmp_path / "log.csv"
    rows = ["user_id,item_id,timestamp"] + [f"{u},{(u + j) % 20 + 1},{j}" for u in range(40) for j in range(6)]
    csv.write_text("\n".join(rows) + "\n")
    flags = [
        "--k-core",
        "0",
        "--hidden",
        "16",
        "--blocks",
        "1",
        "--max-len",
        "8",
        "--epochs",
        "1",
        "--threads",
        "1",
        "--quiet",
    ]
    assert cli("train", csv, "--out", tmp_path / "m1", *flags)[0] == 0
    with open_store(pg_url) as store:
        store.append(
            [
                {"user_id": 1, "item_id": 99, "ts": 10.0},
                {"user_id": "new", "item_id": 3, "ts": 11.0},
                {"user_id": "new", "item_id": 99, "ts": 12.0},
            ]
        )
    code, out, err = cli("export-events", pg_url, "--out", tmp_path / "events.parquet")
    assert code == 0 and out.strip() == f"wrote {tmp_path / 'events.parquet'}: 3 events", err
    assert pl.read_parquet(tmp_path / "events.parquet")["item_id"].to_list() == ["99", "3", "99"]
    code, out, err = cli(
        "train",
        tmp_path / "m1",
        "--from-store",
        pg_url,
        "--init-from",
        tmp_path / "m1",
        "--out",
        tmp_path / "m2",
        *flags,
    )
    assert code == 0, err
    new = load_folder(tmp_path / "m2")
    assert [str(h) for h in new.dataset.item_ids.to_raw(new.dataset.sequence(new.dataset.user_ids.get("1")))][
        -1
    ] == "99"
    rec = Recommender.from_folder(tmp_path / "m2", backend="torch")
    with open_store(pg_url) as store:
        assert live_history(rec, store, "1").events == []  # trained on already
        store.append([{"user_id": 1, "item_id": 5, "ts": 20.0}])
        assert [e.item_id for e in live_history(rec, store, "1").events] == ["5"]
