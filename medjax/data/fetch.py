"""Download a MedMNIST file from its official location and check it against the official MD5.

    python -m medjax.data.fetch medmnist breastmnist --size 28 --dir DATA
    python -m medjax.data.fetch phantom --dir DATA/phantom_mri   # generated, see phantom_folder

The file is written under a temporary name and renamed only once its MD5 matches the one in
MedMNIST's own `info.py`, so DATA never holds a partial or corrupt `<name>[_<size>].npz`; an
interrupted or mismatching download leaves nothing behind. `--url` replaces the base URL (the
Zenodo record), for a mirror.
"""

import argparse
import hashlib
import os
import tempfile
import urllib.error
import urllib.request

from tqdm.auto import tqdm

from medjax.data import medmnist_info, phantom_folder
from medjax.errors import DataError
from medjax.registry import suggest

CHUNK = 1 << 20


def md5sum(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _info(name: str, size: int) -> medmnist_info.Info:
    info = medmnist_info.INFO.get(name)
    if info is None:
        raise DataError(
            f"unknown MedMNIST dataset {name!r}.{suggest(name, medmnist_info.INFO)} Valid "
            f"names: {', '.join(sorted(medmnist_info.INFO))}"
        )
    if size not in info.sizes:
        raise DataError(
            f"{name} is published at sizes {', '.join(map(str, info.sizes))}, not {size}; "
            f"pass --size with one of those"
        )
    return info


def _download(url: str, out, desc: str, progress: bool) -> str:
    """Stream `url` into the open file `out`; returns the MD5 of what was written."""
    digest = hashlib.md5()
    request = urllib.request.Request(url, headers={"User-Agent": "medjax"})
    with urllib.request.urlopen(request, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not progress) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def _temporary_file(directory: str, filename: str) -> tuple[int, str]:
    """A new hidden file in `directory` (created if need be) to download into."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise DataError(
            f"--dir {directory!r} is a file, not a folder; pass the folder to write {filename} into"
        )
    try:
        os.makedirs(directory, exist_ok=True)
        return tempfile.mkstemp(dir=directory, prefix=f".{filename}.", suffix=".part")
    except OSError as e:
        raise DataError(
            f"cannot write into --dir {directory!r} ({e.strerror or e}); pass a folder you can "
            f"write to"
        ) from None


def fetch_medmnist(
    name: str,
    size: int,
    directory: str,
    base_url: str = medmnist_info.ZENODO,
    progress: bool = True,
) -> str:
    """Download `<name>[_<size>].npz` into `directory` (kept if already there and intact);
    returns its path."""
    info = _info(name, size)
    expected = info.md5[size]
    filename = medmnist_info.file_name(name, size)
    dest = os.path.join(directory, filename)
    if os.path.isfile(dest) and md5sum(dest) == expected:
        print(f"{dest}: already there, MD5 matches")
        return dest
    url = medmnist_info.url(name, size, base_url)
    fd, tmp = _temporary_file(directory, filename)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _download(url, out, filename, progress)
            out.flush()
            os.fsync(out.fileno())
        if got != expected:
            raise DataError(
                f"{url}: MD5 {got} does not match the official {expected}; the download was "
                f"deleted. Try again, or check that --url points at the MedMNIST files"
            )
        os.replace(tmp, dest)
    except urllib.error.HTTPError as e:
        raise DataError(
            f"{url}: HTTP {e.code} {e.reason}; check the dataset name and size, or --url"
        ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(
            f"cannot download {url} ({reason}); check the network connection, or pass --url "
            f"with a reachable mirror"
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"{dest}: downloaded, MD5 {expected} verified")
    return dest


def main(argv):
    parser = argparse.ArgumentParser(
        prog="python -m medjax.data.fetch", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="collection", required=True)
    mm = sub.add_parser("medmnist", help="a MedMNIST v2 / MedMNIST+ .npz file")
    mm.add_argument("name", help=f"one of: {', '.join(sorted(medmnist_info.INFO))}")
    mm.add_argument(
        "--size",
        type=int,
        default=28,
        help="image size: 28, 64, 128, 224 (2D); 28, 64 (3D)",
    )
    mm.add_argument(
        "--dir",
        default=os.environ.get("MEDJAX_DATA_DIR"),
        help="folder to write <name>[_<size>].npz into (default: $MEDJAX_DATA_DIR)",
    )
    mm.add_argument(
        "--url", default=medmnist_info.ZENODO, help="base URL of the files (default: Zenodo)"
    )
    mm.add_argument("--no-progress", action="store_true", help="no progress bar")
    phantom_folder.add_parser(sub)
    args = parser.parse_args(argv)
    if args.collection == "phantom":
        return phantom_folder.run(args)
    if not args.dir:
        parser.error("pass --dir DIR (or export MEDJAX_DATA_DIR)")
    fetch_medmnist(args.name, args.size, args.dir, args.url, progress=not args.no_progress)


if __name__ == "__main__":
    from medjax.cli import main_guard  # noqa: PLC0415  (keeps the library import light)

    main_guard(main)
