import functools
import hashlib
import http.server
import threading
import zipfile

import pytest

from seqrec.data.dataset import CleanConfig
from seqrec.data.download import DOWNLOADABLE, download
from seqrec.data.readers import load_dataset
from seqrec.errors import SeqrecError

ITEM = "|Movie (1995)|01-Jan-1995||http://x|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A local file server over tmp_path/www holding an ml-100k-like zip and its .md5."""
    www = tmp_path / "www"
    www.mkdir()
    archive = www / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ml-100k/u.data", "".join(f"{u}\t{i}\t4\t{u * 10 + i}\n" for u in (1, 2) for i in (1, 2, 3)))
        z.writestr("ml-100k/u.item", "".join(f"{i}{ITEM}" for i in (1, 2, 3)))
    (www / "ml-100k.zip.md5").write_text(f"MD5 (ml-100k.zip) = {hashlib.md5(archive.read_bytes()).hexdigest()}\n")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_unzip_and_reuse(server, tmp_path):
    www, url = server
    root = tmp_path / "data"
    path = download("ml-100k", root, base_url=url, quiet=True)
    assert path == root / "ml-100k" and sorted(p.name for p in path.iterdir()) == [
        ".seqrec-download",
        "u.data",
        "u.item",
    ]
    assert [p.name for p in root.iterdir()] == ["ml-100k"]  # no temp files or archives left
    ds = load_dataset(path, CleanConfig(k_core=0))
    assert ds.n_interactions == 6 and ds.catalog["title"][0] == "Movie (1995)"
    # present: returned without touching the network
    assert download("ml-100k", root, base_url="http://127.0.0.1:1", quiet=True) == path
    # force: replaced by a fresh copy
    (path / "stale").write_text("x")
    assert download("ml-100k", root, base_url=url, quiet=True, force=True) == path
    assert not (path / "stale").exists() and [p.name for p in root.iterdir()] == ["ml-100k"]


def test_force_replaces_only_what_download_wrote(server, tmp_path):
    www, url = server
    mine = tmp_path / "ml-100k"
    mine.mkdir()
    (mine / "u.data").write_text("my own edited copy\n")
    with pytest.raises(
        SeqrecError,
        match=r"ml-100k exists and has no .seqrec-download marker of a seqrec "
        r"download, so --force will not replace it",
    ):
        download("ml-100k", tmp_path, base_url=url, quiet=True, force=True)
    assert (mine / "u.data").read_text() == "my own edited copy\n"
    (mine / ".seqrec-download").write_text('{"created_by": "someone else"}')
    with pytest.raises(SeqrecError, match="is not the marker of a seqrec download"):
        download("ml-100k", tmp_path, base_url=url, quiet=True, force=True)
    (tmp_path / "ml-1m").write_text("a file")
    with pytest.raises(SeqrecError, match="ml-1m exists and is not a folder"):
        download("ml-1m", tmp_path, base_url=url, quiet=True, force=True)


def test_env_url_and_missing_checksum(server, tmp_path, monkeypatch, capsys):
    www, url = server
    (www / "ml-100k.zip.md5").unlink()
    monkeypatch.setenv("SEQREC_DOWNLOAD_URL", url)
    monkeypatch.setenv("SEQREC_DATA", str(tmp_path / "home"))
    path = download("ml-100k", quiet=True)
    assert path == tmp_path / "home" / "ml-100k" and (path / "u.data").is_file()
    assert "skipping verification" in capsys.readouterr().err


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    www, url = server
    (www / "ml-100k.zip.md5").write_text("0" * 32 + "  ml-100k.zip\n")
    root = tmp_path / "data"
    with pytest.raises(SeqrecError, match="checksum mismatch.*nothing was kept"):
        download("ml-100k", root, base_url=url, quiet=True)
    assert list(root.iterdir()) == []


def test_progress_bar_when_not_quiet(server, tmp_path, capsys):
    _, url = server
    download("ml-100k", tmp_path / "data", base_url=url)
    err = capsys.readouterr().err
    assert "ml-100k.zip" in err and "ready in" in err


def test_errors(server, tmp_path):
    _, url = server
    with pytest.raises(SeqrecError, match=r"http://127\.0\.0\.1:1/ml-1m\.zip"):
        download("ml-1m", tmp_path, base_url="http://127.0.0.1:1", quiet=True)
    with pytest.raises(SeqrecError, match=r"ml-1m\.zip failed: HTTP 404"):
        download("ml-1m", tmp_path, base_url=url, quiet=True)
    with pytest.raises(SeqrecError, match="unknown data set 'ml-2m'; downloadable: " + ", ".join(DOWNLOADABLE)):
        download("ml-2m", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["www"]
