import json

import pytest

from seqrec.cli.commands import build_parser, main


def test_every_command_has_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {
        "download",
        "prepare",
        "stats",
        "evaluate",
        "compare",
        "train",
        "plot",
        "recommend",
        "similar",
        "export-items",
        "export-onnx",
        "serve",
        "demo",
    } <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: seqrec " + name in capsys.readouterr().out


def test_stats_ml100k_counts(shared_data, cli):
    code, out, _ = cli("stats", shared_data / "ml-100k", "--json")
    assert code == 0
    before = json.loads(out)["before"]
    assert (before["users"], before["items"], before["interactions"]) == (943, 1682, 99_999)
    code, out, _ = cli("stats", shared_data / "ml-100k")
    assert "99,999" in out and "1,682" in out and "943" in out


def test_evaluate_json_and_markov_beats_popularity(log_csv, cli):
    scores = {}
    for model in ("popularity", "markov"):
        code, out, _ = cli("evaluate", log_csv, "--model", model, "--json", "-q", "--k-core", "0")
        assert code == 0
        scores[model] = json.loads(out)
        assert {"HR@10", "NDCG@10", "MRR", "Precision@5", "Recall@20", "Coverage@10"} <= set(scores[model])
    assert scores["markov"]["HR@1"] > 0.9 > scores["popularity"]["HR@10"] + 0.3


def test_compare_writes_table_and_chart(log_csv, tmp_path, cli):
    chart = tmp_path / "c.png"
    code, out, _ = cli(
        "compare",
        log_csv,
        "--k-core",
        "0",
        "--model",
        "popularity",
        "--model",
        "ar2",
        "--chart",
        chart,
        "-q",
        "--n-negatives",
        "10",
    )
    assert code == 0
    assert "NDCG@10 full" in out and "NDCG@10 sampled-100" in out and "| ar2" in out
    assert chart.read_bytes()[:4] == b"\x89PNG"


def test_prepare_is_atomic_and_needs_force(log_csv, tmp_path, cli):
    out_dir = tmp_path / "prep"
    assert cli("prepare", log_csv, "--out", out_dir, "--k-core", "0")[0] == 0
    meta = json.loads((out_dir / "meta.json").read_text())
    assert meta["users"] == 60 and meta["items"] == 30
    code, _, err = cli("prepare", log_csv, "--out", out_dir)
    assert code == 2 and "--force" in err
    assert json.loads((out_dir / "meta.json").read_text()) == meta  # untouched
    assert cli("prepare", log_csv, "--out", out_dir, "--force", "--k-core", "5")[0] == 0
    assert cli("stats", out_dir, "--json")[0] == 0


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["evaluate", "no/such/file.csv"], "no such file"),
        (["evaluate", "synthetic", "--model", "deepfm"], "popularity"),
        (["evaluate", "nonsense-name"], "ml-100k"),
        (["evaluate", "synthetic", "--k", "ten"], "--k"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, expected, cli):
    code, _, err = cli(*argv)
    assert code == 2
    assert err.startswith("seqrec: error:") and expected in err and "Traceback" not in err


def test_unparseable_line_names_file_and_line(tmp_path, cli):
    bad = tmp_path / "games.txt"
    bad.write_text("1 5\n1 6\n2 x7\n")
    code, _, err = cli("stats", bad)
    assert code == 2 and "games.txt" in err and "line 3" in err


def test_empty_after_k_core_says_what_was_left(tmp_path, cli):
    f = tmp_path / "tiny.csv"
    f.write_text("user,item\n1,1\n1,2\n2,1\n")
    code, _, err = cli("stats", f)
    assert code == 2 and "nothing left" in err and "k_core=5" in err


def test_train_evaluate_recommend_round_trip(log_csv, tmp_path, cli):
    run_dir = tmp_path / "run"
    code, out, err = cli(
        "train",
        log_csv,
        "--out",
        run_dir,
        "--k-core",
        "0",
        "--hidden",
        "16",
        "--blocks",
        "1",
        "--max-len",
        "8",
        "--epochs",
        "30",
        "--lr",
        "0.01",
        "--batch-size",
        "16",
        "--eval-every",
        "10",
        "--threads",
        "1",
        "-q",
    )
    assert code == 0, err
    assert "test" in out and (run_dir / "model.safetensors").is_file()
    code, out, _ = cli("evaluate", log_csv, "--k-core", "0", "--model", run_dir, "--json", "-q")
    assert code == 0 and json.loads(out)["HR@10"] > 0.5
    code, out, _ = cli("recommend", run_dir, "--history", "3,4,5", "-k", "3", "--json")
    result = json.loads(out)
    assert code == 0 and [i["rank"] for i in result["items"]] == [1, 2, 3] and result["fallback"] is False
    code, out, _ = cli("recommend", run_dir, "--user", "u1", "-k", "2")
    assert code == 0 and "rank" in out
    code, out, _ = cli("recommend", run_dir, "--history", "999", "--json")
    assert json.loads(out)["fallback"] is True and json.loads(out)["unknown_items"] == ["999"]
    assert cli("similar", run_dir, "7", "-k", "3")[0] == 0
    items = tmp_path / "items.csv"
    assert cli("export-items", run_dir, "--out", items)[0] == 0
    assert len(items.read_text().splitlines()) == 31
    assert cli("plot", run_dir)[0] == 0
    code, _, err = cli("evaluate", "synthetic", "--model", run_dir)
    assert code == 2 and "fingerprint" in err


def test_serve_takes_a_flag_for_every_limit(tmp_path, cli, monkeypatch):
    import dataclasses

    import seqrec.serving.server as S
    from seqrec.cli.options import _limits
    from seqrec.serving.limits import Limits

    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]
    helps = {a.dest: a.help for a in serve._actions}
    for f in dataclasses.fields(Limits):  # one flag per field, its help and default from the dataclass
        assert helps[f"limit_{f.name}"] == f"{f.metadata['help']} (default: {f.default:,})"
    assert _limits(parser.parse_args(["serve", "m"])) is None  # then SEQREC_LIMITS or the defaults
    monkeypatch.setenv("SEQREC_LIMITS", '{"max_batch_results": 50, "max_batch": 9}')
    args = parser.parse_args(["serve", "m", "--limit-max-batch", "5", "--limit-batch-queue", "0"])
    assert _limits(args) == Limits(max_batch=5, batch_queue=0, max_batch_results=50)  # a flag wins
    served = []
    monkeypatch.setattr(S, "run", lambda model, **kw: served.append(kw["limits"]))
    assert cli("serve", tmp_path, "--limit-max-response-bytes", "7000")[0] == 0
    assert served == [Limits(max_batch=9, max_batch_results=50, max_response_bytes=7000)]
    code, out, err = cli("serve", tmp_path, "--limit-max-batch", "0")
    assert code == 2 and out == "" and "--limit-max-batch: expected an integer >= 1, got 0" in err
