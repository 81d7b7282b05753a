"""Download the GroupLens MovieLens archives: streamed with progress, MD5-checked, unpacked atomically.

``download("ml-1m")`` fetches ``<base>/ml-1m.zip`` (base: ``https://files.grouplens.org/datasets/movielens``,
or ``$SEQREC_DOWNLOAD_URL``, or ``base_url=``), checks it against ``ml-1m.zip.md5`` when GroupLens publishes
one, unpacks it into a temp folder and renames that to ``<dir>/ml-1m``. Nothing half-written is ever left
under the final name: a failed or mismatched download leaves no trace.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from seqrec.data.source import data_home
from seqrec.errors import SeqrecError
from seqrec.files import atomic_write_text
from seqrec.publish import publish_dir

BASE_URL = "https://files.grouplens.org/datasets/movielens"
DOWNLOADABLE = ("ml-100k", "ml-1m", "ml-10m", "ml-latest-small", "ml-20m", "ml-25m", "ml-32m")
CHUNK = 1 << 20
DOWNLOAD_MARKER = ".seqrec-download"  # written in every folder download makes: --force replaces only those
TIMEOUT_S = 60


def download(
    name: str,
    dir: str | os.PathLike | None = None,
    *,
    base_url: str | None = None,
    quiet: bool = False,
    force: bool = False,
) -> Path:
    """Fetch and unpack MovieLens ``name`` into ``<dir>/<name>`` (default dir: ``$SEQREC_DATA`` or
    ``~/.cache/seqrec``) and return that folder. An existing folder is returned as is unless ``force``."""
    if name not in DOWNLOADABLE:
        raise SeqrecError(f"unknown data set {name!r}; downloadable: {', '.join(DOWNLOADABLE)}")
    root = Path(dir).expanduser() if dir is not None else data_home()
    target = root / name
    if target.exists() and not force:
        return target
    if target.exists() or target.is_symlink():
        problem = _not_a_download(target)
        if problem:
            raise SeqrecError(
                f"{target} exists and {problem}, so --force will not replace it; move it away or give another folder"
            )
    base = (base_url or os.environ.get("SEQREC_DOWNLOAD_URL") or BASE_URL).rstrip("/")
    url = f"{base}/{name}.zip"
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".zip.tmp", dir=root)
    archive = Path(tmp_name)
    unpack = None
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _fetch(url, out, quiet)
        expected = _published_md5(url + ".md5")
        if expected is None:
            _say(f"no checksum published at {url}.md5; skipping verification", quiet=False)
        elif expected != digest:
            raise SeqrecError(f"checksum mismatch for {url}: expected MD5 {expected}, got {digest}; nothing was kept")
        unpack = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(unpack)
        except (zipfile.BadZipFile, OSError) as e:
            raise SeqrecError(f"{url}: the archive could not be unpacked ({e})") from e
        entries = list(unpack.iterdir())
        content = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpack  # zips hold one folder
        atomic_write_text(
            content / DOWNLOAD_MARKER,
            json.dumps({"created_by": "seqrec", "kind": "download", "url": url, "md5": digest}, sort_keys=True) + "\n",
        )
        publish_dir(content, target)  # swapped in: the old copy stays readable until the new one is there
        _say(f"{name} ready in {target}", quiet)
        return target
    finally:
        archive.unlink(missing_ok=True)
        if unpack is not None:
            shutil.rmtree(unpack, ignore_errors=True)


def _not_a_download(target: Path) -> str | None:
    """Why ``target`` is not a folder ``download`` wrote (None when it is one: its marker reads as ours)."""
    if target.is_symlink() or not target.is_dir():
        return "is not a folder"
    try:
        doc = json.loads((target / DOWNLOAD_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"has no {DOWNLOAD_MARKER} marker of a seqrec download"
    if not (isinstance(doc, dict) and doc.get("created_by") == "seqrec" and doc.get("kind") == "download"):
        return f"its {DOWNLOAD_MARKER} is not the marker of a seqrec download"
    return None


def _fetch(url: str, out, quiet: bool) -> str:
    """Stream ``url`` into the open file ``out`` with a progress bar; returns the MD5 hex digest."""
    md5, size = hashlib.md5(), 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], disable=quiet, file=sys.stderr
            ) as bar:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
            if total is not None and size != total:
                raise SeqrecError(f"download of {url} was cut short ({size} of {total} bytes)")
    except urllib.error.HTTPError as e:
        raise SeqrecError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise SeqrecError(f"download of {url} failed: {reason}") from e
    return md5.hexdigest()


def _published_md5(url: str) -> str | None:
    """The MD5 in a ``.md5`` file (``<hex>  name`` or ``MD5 (name) = <hex>``), or None when there is none."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            text = resp.read(4096).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return None
    found = re.search(r"\b[0-9a-fA-F]{32}\b", text)
    return found.group(0).lower() if found else None


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr)
