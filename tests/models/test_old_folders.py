"""Model folders written before the package layout of today (seqrec 0.1.0, flat modules) still load,
verified, and rank exactly as they did when they were saved (``tests/fixtures/make_model_v0_1.py``)."""

import json
import shutil
from pathlib import Path

from seqrec import Recommender, SASRec
from seqrec.models.folder import load_folder
from seqrec.models.sasrec import SASRecModel

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_a_folder_saved_by_the_flat_layout_loads_and_ranks_as_it_did(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / "model-v0.1", folder)  # loading may recover or verify; never touch the fixture
    expected = json.loads((FIXTURES / "model-v0.1.expected.json").read_text())
    bundle = load_folder(folder)
    assert isinstance(bundle.scorer, SASRecModel) and bundle.scorer.n_items == 20
    rec = Recommender.from_folder(folder)
    got = [[i.item_id for i in rec.recommend(h, k=5).items] for h in expected["histories"]]
    assert got == expected["top5"]
    est = SASRec.load(folder)
    assert est.get_params()["hidden"] == 16 and est.result_ is not None and est.result_.best_epoch >= 1
