"""The web page in a real headless Chromium (Playwright): search, build a history, live recommendations."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright for Python is not installed")
uvicorn = pytest.importorskip("uvicorn")

from seqrec.serving.app import create_app  # noqa: E402
from seqrec.serving.recommender import Recommender  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """uvicorn on a free port, in a thread."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def browser():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the server scores on its own thread
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()
    torch.set_num_threads(before)


def rec_ids(page) -> list[str]:
    return page.locator('[data-testid="recommendation"]').evaluate_all("els => els.map(e => e.dataset.itemId)")


def add_by_search(page, query: str, title: str) -> None:
    before = rec_ids(page)
    page.fill("#search-input", query)
    result = page.locator('[data-testid="search-result"]', has_text=title).first
    result.wait_for(timeout=10_000)
    result.locator('[data-testid="add-item"]').click()
    page.wait_for_function(  # recommendations update live
        "before => JSON.stringify([...document.querySelectorAll('[data-testid=recommendation]')]"
        ".map(e => e.dataset.itemId)) !== before",
        arg=__import__("json").dumps(before),
        timeout=10_000,
    )


def test_search_history_recommendations_similar(browser, tmp_path, tiny_dataset, make_scorer) -> None:
    data = tiny_dataset()
    app = create_app(Recommender(make_scorer(data.n_items), data, name="tiny-sasrec"))
    with Server(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        # first view: popular items as a fallback, the model's facts
        page.locator('[data-testid="recommendation"]').first.wait_for(timeout=10_000)
        assert page.locator('[data-testid="fallback-note"]').is_visible()
        page.locator('[data-testid="fact-items"]').wait_for(timeout=10_000)
        assert page.locator('[data-testid="fact-items"]').inner_text() == "12"
        assert "tiny-sasrec" in page.locator('[data-testid="model-badge"]').inner_text()

        add_by_search(page, "star w", "Star Wars")
        page.locator('[data-testid="fallback-note"]').wait_for(state="hidden", timeout=10_000)
        add_by_search(page, "ALIEN", "Alien")
        add_by_search(page, "toy", "Toy Story")

        history = page.locator('[data-testid="history-item"]')
        assert history.evaluate_all("els => els.map(e => e.dataset.itemId)") == ["101", "103", "104"]
        assert page.locator('[data-testid="history-count"]').inner_text() == "3"
        recs = rec_ids(page)
        assert len(recs) == 9 and not {"101", "103", "104"} & set(recs)  # 12 items, 3 seen
        cards = page.locator('[data-testid="recommendation"]')
        assert cards.first.locator(".item-title").inner_text() != ""
        assert float(cards.first.locator('[data-testid="score"]').inner_text()) >= float(
            cards.last.locator('[data-testid="score"]').inner_text()
        )

        # reorder: the last item moves up; then remove the first
        before = rec_ids(page)
        history.nth(2).locator('[data-testid="move-up"]').click()
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=history-item]')[1].dataset.itemId === '104'"
        )
        assert history.evaluate_all("els => els.map(e => e.dataset.itemId)") == ["101", "104", "103"]
        history.nth(0).locator('[data-testid="remove"]').click()
        page.wait_for_function("() => document.querySelectorAll('[data-testid=history-item]').length === 2")
        page.wait_for_function("() => document.querySelectorAll('[data-testid=recommendation]').length === 10")
        assert rec_ids(page) != before

        # similar items for a clicked recommendation
        cards.first.click()
        page.locator('[data-testid="similar-item"]').first.wait_for(timeout=10_000)
        assert page.locator('[data-testid="similar-item"]').count() == 10  # every other item, by cosine
        assert page.locator('[data-testid="similar-source"]').is_visible()

        shot = tmp_path / "web.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        assert not errors, errors
        assert not page.locator('[data-testid="error"]').is_visible()
        page.close()


def test_stored_history_of_a_user(browser, tmp_path, tiny_dataset, make_scorer) -> None:
    from seqrec.serving.store import EventStore

    data = tiny_dataset()
    with EventStore(tmp_path / "events.db") as store:
        store.append([("u0", 104, 1_700_000_000), ("u0", 999, 1_700_000_100)])
        app = create_app(Recommender(make_scorer(data.n_items), data, name="tiny-sasrec"), store=store)
        with Server(app) as url:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url + "/")
            page.fill('[data-testid="store-user"]', "u0")
            page.click('[data-testid="store-show"]')
            events = page.locator('[data-testid="store-event"]')
            events.first.wait_for(timeout=10_000)
            assert events.evaluate_all("els => els.map(e => e.dataset.itemId)") == [
                "999",
                "104",
                "103",
                "112",
                "102",
                "101",
            ]
            assert "not known to the model" in events.first.inner_text()
            assert events.nth(1).get_attribute("data-source") == "store" and "Toy Story" in events.nth(1).inner_text()
            assert "2 stored events after 4 training items" in page.locator('[data-testid="store-note"]').inner_text()
            page.click('[data-testid="store-use"]')  # the known items become the page's history
            page.wait_for_function("() => document.querySelectorAll('[data-testid=history-item]').length === 5")
            assert page.locator('[data-testid="history-item"]').evaluate_all(
                "els => els.map(e => e.dataset.itemId)"
            ) == ["101", "102", "112", "103", "104"]
            page.fill('[data-testid="store-user"]', "ghost")
            page.click('[data-testid="store-show"]')
            page.wait_for_function(
                "() => document.querySelector('[data-testid=store-note]').textContent"
                ".includes('No history for user ghost')"
            )
            assert events.count() == 0 and not page.locator('[data-testid="error"]').is_visible()
            assert not errors, errors
            page.close()


@pytest.mark.realdata
def test_screenshot_on_movielens(browser, shared_data: Path, tmp_path) -> None:
    """The page on MovieLens 100k with the AR-1 baseline; writes docs/screenshot.png once, if missing."""
    from seqrec.data.readers import load_dataset
    from seqrec.data.split import LeaveOneOut
    from seqrec.models.baselines import make_baseline

    if not (shared_data / "ml-100k").is_dir():
        pytest.skip("ml-100k not in the shared data")
    data = load_dataset(shared_data / "ml-100k")
    app = create_app(Recommender(make_baseline("markov", LeaveOneOut(data)), data, name="ml-100k · markov"))
    with Server(app) as url:
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(url + "/")
        page.locator('[data-testid="recommendation"]').first.wait_for(timeout=10_000)
        for query, title in [("star wars", "Star Wars"), ("empire", "Empire Strikes Back"), ("raiders", "Raiders")]:
            add_by_search(page, query, title)
        page.fill("#search-input", "star")
        page.locator('[data-testid="search-result"]').nth(3).wait_for(timeout=10_000)
        page.locator('[data-testid="recommendation"]').first.click()
        page.locator('[data-testid="similar-item"]').first.wait_for(timeout=10_000)
        shot = tmp_path / "screenshot.png"
        page.screenshot(path=str(shot), full_page=True)
        assert len(page.locator('[data-testid="history-item"]').all()) == 3
        if not DOCS_SCREENSHOT.exists():
            DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copy(shot, DOCS_SCREENSHOT)
        page.close()


def demo_like(data):
    """A SASRec like the demo's: genres and years as item features, in the scores too; briefly trained."""
    from seqrec.data.split import LeaveOneOut
    from seqrec.models.sasrec import SASRecConfig, SASRecModel
    from seqrec.training.loop import TrainConfig, train

    torch.manual_seed(0)
    model = SASRecModel.for_data(
        SASRecConfig(
            n_items=data.n_items, hidden=16, blocks=1, max_len=5, item_features="genres,year", feature_output=True
        ),
        data,
    )
    train(
        model, LeaveOneOut(data), TrainConfig(epochs=3, batch_size=8, quiet=True, device="cpu", threads=1, eval_every=0)
    )
    return model.eval()


def test_item_features_and_new_items(browser, tiny_dataset) -> None:
    data = tiny_dataset()
    key = "web-features-test-key"
    app = create_app(Recommender(demo_like(data), data, name="tiny-features", backend="torch"), api_key=key)
    with Server(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        cards = page.locator('[data-testid="recommendation"]')
        cards.first.wait_for(timeout=10_000)
        # every card shows its features: genres as chips, the year; trained items are not "new"
        first = cards.first
        chip = first.locator('[data-testid="feature-chip"]').first
        assert chip.is_visible() and chip.inner_text() != ""
        assert first.locator('[data-testid="item-year"]').inner_text().isdigit()
        assert page.locator('[data-testid="new-badge"]').count() == 0

        new = {"item_id": "new-sf", "title": "Star Voyage", "genres": ["Sci-Fi"], "year": 1995}
        answer = page.request.post(url + "/admin/items", data={"items": [new]}, headers={"X-API-Key": key})
        assert answer.status == 200, answer.text()
        for query, title in [("star w", "Star Wars"), ("star t", "Star Trek"), ("ALIEN", "Alien")]:
            add_by_search(page, query, title)
        card = page.locator('[data-testid="recommendation"][data-item-id="new-sf"]')
        card.wait_for(timeout=10_000)  # 13 items, 3 seen: every other one is recommended
        badge = card.locator('[data-testid="new-badge"]')
        assert badge.is_visible() and badge.inner_text().lower() == "new"
        assert badge.get_attribute("title") == "no interactions yet — ranked by its features"
        assert card.locator('[data-testid="feature-chip"]').all_inner_texts() == ["Sci-Fi"]
        assert card.locator('[data-testid="item-year"]').inner_text() == "1995"
        assert page.locator('[data-testid="recommendation"] [data-testid="new-badge"]').count() == 1

        card.click()  # its details: the badge and its features beside "Like ..."
        source = page.locator('[data-testid="similar-source"]')
        source.locator('[data-testid="new-badge"]').wait_for(timeout=10_000)
        assert "Star Voyage" in source.inner_text() and "no interactions yet" in source.inner_text()
        assert source.locator('[data-testid="feature-chip"]').all_inner_texts() == ["Sci-Fi"]

        page.fill("#search-input", "voyage")  # search results mark it too
        found = page.locator('[data-testid="search-result"][data-item-id="new-sf"]')
        found.wait_for(timeout=10_000)
        assert found.locator('[data-testid="new-badge"]').is_visible() and "plays" not in found.inner_text()
        assert not errors, errors
        assert not page.locator('[data-testid="error"]').is_visible()
        page.close()


def test_because_you_liked_and_long_titles(browser, tiny_dataset, make_scorer) -> None:
    """Each card says which history items raised it ("because you liked X, Y"); a long title wraps inside the
    card, clear of the rank badge."""
    import polars as pl

    from seqrec.data.dataset import Dataset

    data = tiny_dataset()
    long = "Babe: " + "Pig" * 40 + " in the City of Very Long Titles That Go On"
    catalog = data.catalog.with_columns(
        pl.when(pl.col("raw_id") == 110).then(pl.lit(long)).otherwise(pl.col("title")).alias("title")
    )
    data = Dataset(data.offsets, data.items, data.user_ids, data.item_ids, catalog, data.meta)
    app = create_app(Recommender(make_scorer(data.n_items), data, name="tiny-sasrec"))
    with Server(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.locator('[data-testid="recommendation"]').first.wait_for(timeout=10_000)
        assert page.locator('[data-testid="because"]').count() == 0  # popularity: nothing to explain
        add_by_search(page, "star w", "Star Wars")
        add_by_search(page, "alien", "Alien")
        page.locator('[data-testid="because"]').first.wait_for(timeout=10_000)
        lines = page.locator('[data-testid="because"]').all_inner_texts()
        assert lines and all(t.startswith("because you liked ") for t in lines)
        assert all(
            {n.strip() for n in t.removeprefix("because you liked ").split(",")} <= {"Star Wars", "Alien"}
            for t in lines
        )
        card = page.locator('[data-testid="recommendation"][data-item-id="110"]')
        title, rank, box = (card.locator(s).bounding_box() for s in (".item-title", ".rank", ":scope"))
        assert title["y"] + title["height"] > rank["y"] + rank["height"]  # the long title takes several lines
        text_right = card.locator(".item-title").evaluate(
            "e => { const r = document.createRange(); r.selectNodeContents(e); "
            "return Math.max(...[...r.getClientRects()].map(x => x.right)); }"
        )
        assert text_right <= rank["x"] + 0.5, (text_right, rank)  # no line runs under the badge
        assert title["x"] + title["width"] <= box["x"] + box["width"] + 0.5  # nor out of the card
        assert not errors, errors
        page.close()
