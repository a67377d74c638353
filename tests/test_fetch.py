"""The MedMNIST download helper against a local HTTP server (never the internet)."""

import dataclasses
import functools
import hashlib
import http.server
import subprocess
import sys
import threading

import pytest

from medjax.data import fetch, medmnist_info
from medjax.errors import DataError
from tests.conftest import ROOT

PAYLOAD = b"not really an npz, but bytes with a known MD5" * 100


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A folder served on 127.0.0.1 at an ephemeral port; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_Quiet, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/files"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def official_md5(monkeypatch):
    """Make PAYLOAD the 'official' breastmnist_64.npz (its real MD5 cannot be forged)."""

    def set_md5(md5):
        info = medmnist_info.INFO["breastmnist"]
        patched = dataclasses.replace(info, md5={**info.md5, 64: md5})
        monkeypatch.setitem(medmnist_info.INFO, "breastmnist", patched)

    set_md5(hashlib.md5(PAYLOAD).hexdigest())
    return set_md5


def _serve(served, name="breastmnist_64.npz", payload=PAYLOAD):
    (served / "files").mkdir(exist_ok=True)
    (served / "files" / name).write_bytes(payload)


def test_download_verified_and_written_atomically(server, official_md5, tmp_path, capsys):
    served, base = server
    _serve(served)
    out = tmp_path / "data"
    path = fetch.fetch_medmnist("breastmnist", 64, str(out), base)
    assert path == str(out / "breastmnist_64.npz")
    assert (out / "breastmnist_64.npz").read_bytes() == PAYLOAD
    assert [p.name for p in out.iterdir()] == ["breastmnist_64.npz"]  # no temp file left
    assert "verified" in capsys.readouterr().out
    fetch.fetch_medmnist("breastmnist", 64, str(out), base, progress=False)
    assert "already there" in capsys.readouterr().out


def test_checksum_mismatch_deletes_and_keeps_an_existing_file(server, official_md5, tmp_path):
    served, base = server
    _serve(served, payload=PAYLOAD + b"tampered")
    out = tmp_path / "data"
    with pytest.raises(DataError, match="does not match the official"):
        fetch.fetch_medmnist("breastmnist", 64, str(out), base, progress=False)
    assert list(out.iterdir()) == []


def test_http_404_names_the_url(server, tmp_path):
    _, base = server
    with pytest.raises(DataError, match="breastmnist_128.npz.*HTTP 404"):
        fetch.fetch_medmnist("breastmnist", 128, str(tmp_path / "data"), base, progress=False)
    assert list((tmp_path / "data").iterdir()) == []


def test_unknown_name_and_size_list_the_valid_ones(tmp_path):
    with pytest.raises(DataError, match="unknown MedMNIST dataset 'brestmnist'.*breastmnist"):
        fetch.fetch_medmnist("brestmnist", 28, str(tmp_path))
    with pytest.raises(DataError, match="sizes 28, 64, not 224"):
        fetch.fetch_medmnist("organmnist3d", 224, str(tmp_path))


def test_official_urls_are_the_zenodo_record():
    assert medmnist_info.url("pathmnist", 224) == (
        "https://zenodo.org/records/10519652/files/pathmnist_224.npz?download=1"
    )
    assert medmnist_info.url("breastmnist", 28, "http://mirror/x/") == (
        "http://mirror/x/breastmnist.npz?download=1"
    )


def test_command_line_error_is_one_message(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "medjax.data.fetch", "medmnist", "nosuchmnist"]
        + ["--size", "28", "--dir", str(tmp_path), "--url", "http://127.0.0.1:9/"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode == 2
    assert run.stderr.startswith("medjax: error: unknown MedMNIST dataset 'nosuchmnist'")
    assert "Traceback" not in run.stderr


def test_phantom_folder_is_written_whole_and_reads_as_an_image_folder(tmp_path):
    from medjax.configs import get_base_config
    from medjax.data import load_dataset

    root = tmp_path / "mri"
    sizes = ["--size", "16", "--train", "8", "--val", "4", "--test", "4", "--noise", "2"]
    fetch.main(["phantom", "--dir", str(root), *sizes])
    assert sorted(p.name for p in root.iterdir()) == ["test", "train", "val"]
    c = get_base_config()
    c.data.source, c.data.path, c.data.image_size, c.data.cache = (
        "image_folder",
        str(root),
        16,
        False,
    )
    ds = load_dataset(c.data)
    assert ds.class_names == ["lesion_1", "lesion_2", "lesion_3", "no_lesion"]
    assert {n: len(s) for n, s in ds.splits.items()} == {"train": 8, "val": 4, "test": 4}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".phantom-")]
    with pytest.raises(DataError, match="exists already"):
        fetch.main(["phantom", "--dir", str(root)])
