"""Fixtures shared by the test modules: real data, one torch thread, the command line, a small log file,
and the tiny catalogue (titles, histories, scorers) the recommender and service tests use."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from seqrec.cli.commands import main
from seqrec.data.dataset import CleanConfig, Dataset

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

TITLES = {
    101: ("Star Wars", ["Sci-Fi", "Adventure"]),
    102: ("Star Trek", ["Sci-Fi"]),
    103: ("Alien", ["Horror", "Sci-Fi"]),
    104: ("Toy Story", ["Animation", "Comedy"]),
    105: ("The Lion King", ["Animation"]),
    106: ("Heat", ["Crime"]),
    107: ("Casino", ["Crime", "Drama"]),
    108: ("Fargo", ["Crime", "Comedy"]),
    109: ("Lone Star", ["Drama"]),
    110: ("Babe", ["Comedy"]),
    111: ("Twister", ["Action"]),
    112: ("Stargate", ["Sci-Fi", "Action"]),
}
SEQUENCES = [
    [101, 102, 112, 103],
    [101, 112, 102],
    [104, 105, 110],
    [106, 107, 108],
    [106, 108, 107, 109],
    [104, 110, 105, 111],
    [101, 102, 103, 112, 111],
    [107, 106, 109],
    [101, 102],
    [104, 105],
    [111, 112, 101],
    [108, 109, 106, 107],
    [101, 103],
    [110, 104],
    [102, 101, 112],
]


@pytest.fixture
def shared_data() -> Path:
    """The real data sets beside the checkout; tests that need them skip when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def one_thread():
    """Tests use tiny tensors: one intra-op thread is faster there, and immune to busy shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- the command line
@pytest.fixture
def cli(capsys):
    """``cli(*argv) -> (exit code, stdout, stderr)`` of one ``seqrec`` command."""

    def run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def log_csv(tmp_path) -> Path:
    """60 users walking a ring of 30 items: the next item is the last one + 1."""
    rng = np.random.default_rng(0)
    lines = ["user_id,item_id,timestamp"]
    for u in range(60):
        start = int(rng.integers(30))
        for t in range(int(rng.integers(6, 12))):
            lines.append(f"u{u},{(start + t) % 30 + 1},{1000 + t}")
    path = tmp_path / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- the tiny catalogue
def _tiny_dataset() -> Dataset:
    users = [f"u{u}" for u, s in enumerate(SEQUENCES) for _ in s]
    frame = pl.DataFrame(
        {
            "user": users,
            "item": [i for s in SEQUENCES for i in s],
            "timestamp": [t for s in SEQUENCES for t in range(len(s))],
        }
    )
    catalog = pl.DataFrame(
        {
            "raw_id": list(TITLES),
            "title": [t for t, _ in TITLES.values()],
            "genres": [g for _, g in TITLES.values()],
            "year": [1990 + i for i in range(len(TITLES))],
        }
    )
    return Dataset.from_interactions(frame, catalog=catalog, config=CleanConfig(k_core=0), name="tiny")


class FakeScorer(torch.nn.Module):
    """Mean of the history's item embeddings dotted with every item embedding (has embeddings)."""

    def __init__(self, n_items: int, max_len: int = 5, d: int = 8) -> None:
        super().__init__()
        self.n_items, self.max_len = n_items, max_len
        self.emb = torch.nn.Embedding(n_items + 1, d, padding_idx=0)
        torch.nn.init.normal_(self.emb.weight, generator=torch.Generator().manual_seed(0))

    def item_embeddings(self) -> torch.Tensor:
        return self.emb.weight

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        h = histories[:, -self.max_len :]
        keep = (h != 0).float().unsqueeze(-1)
        weights = torch.arange(1, h.shape[1] + 1, dtype=torch.float32).view(1, -1, 1)  # recent items weigh more
        user = (self.emb(h) * keep * weights).sum(1) / (keep * weights).sum(1).clamp_min(1)
        return user @ self.emb.weight.T


class CountScorer:
    """A baseline without embeddings: training counts for every history (a view, like Popularity)."""

    def __init__(self, dataset: Dataset) -> None:
        self.n_items, self.max_len = dataset.n_items, 5
        self.counts = torch.from_numpy(np.bincount(dataset.items, minlength=dataset.n_items + 1).astype(np.float32))

    def score(self, histories: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(histories.shape[0], -1)


def _make_scorer(n_items: int, max_len: int = 5, norm: str = "pre"):
    try:
        from seqrec.models.sasrec import SASRecConfig, SASRecModel
    except ImportError:
        return FakeScorer(n_items, max_len)
    torch.manual_seed(0)
    return SASRecModel(SASRecConfig(n_items=n_items, hidden=16, blocks=1, heads=1, max_len=max_len, norm=norm)).eval()


@pytest.fixture(scope="session")
def titles() -> dict:
    """Raw id -> (title, genres) of the tiny catalogue's 12 films."""
    return TITLES


@pytest.fixture(scope="session")
def sequences() -> list[list[int]]:
    """The tiny data set's 15 histories (user ``u{i}`` is ``sequences[i]``), raw ids."""
    return SEQUENCES


@pytest.fixture(scope="session")
def tiny_dataset():
    """``tiny_dataset()``: a fresh Dataset of ``sequences`` over ``titles`` (with genres and years)."""
    return _tiny_dataset


@pytest.fixture(scope="session")
def make_scorer():
    """``make_scorer(n_items, max_len=5, norm="pre")``: an untrained, seeded, small SASRecModel."""
    return _make_scorer


@pytest.fixture(scope="session")
def tiny_app():
    """``tiny_app(metrics=None, **create_app options) -> (recommender, app)``: a fresh recommender over the
    tiny catalogue (``make_scorer``'s SASRec, named "tiny") and the service in front of it."""
    from seqrec.serving.app import create_app
    from seqrec.serving.recommender import Recommender

    def build(metrics: dict | None = None, **options):
        data = _tiny_dataset()
        rec = Recommender(_make_scorer(data.n_items), data, name="tiny", metrics=metrics)
        return rec, create_app(rec, **options)

    return build


@pytest.fixture(scope="session")
def fake_scorer() -> type:
    """The ``FakeScorer`` class: a scorer with item embeddings, without SASRec."""
    return FakeScorer


@pytest.fixture(scope="session")
def count_scorer() -> type:
    """The ``CountScorer`` class: a scorer without embeddings (training counts)."""
    return CountScorer
