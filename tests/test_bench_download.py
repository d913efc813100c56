import io

import pytest
from PIL import Image

from icmkit.bench import download
from icmkit.bench.datasets import open_dataset
from icmkit.errors import IcmError

from conftest import synthetic_photo


def _png(height=512, width=768) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(synthetic_photo(height, width)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_kodak_downloads_once_and_loads(tmp_path):
    calls = []
    payload = _png()

    def opener(url):
        calls.append(url)
        return payload

    folder = download.kodak(tmp_path / "kodak", opener=opener)
    assert len(calls) == 24 and calls[0].endswith("kodim01.png")
    assert len(open_dataset(folder, "fidelity").samples) == 24
    download.kodak(tmp_path / "kodak", opener=opener)
    assert len(calls) == 24  # cached


def test_bad_downloads_are_refused_and_not_kept(tmp_path):
    with pytest.raises(IcmError, match="not a 768×512"):
        download.kodak(tmp_path / "k", opener=lambda url: _png(64, 64))
    with pytest.raises(IcmError, match="not a valid PNG"):
        download.kodak(tmp_path / "k", opener=lambda url: b"<html>moved</html>")
    assert not any((tmp_path / "k").glob("*.png"))


def test_offline_switch_and_network_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("ICM_OFFLINE", "1")
    with pytest.raises(IcmError, match="ICM_OFFLINE"):
        download.kodak(tmp_path / "k", opener=lambda url: pytest.fail("must not download"))
    monkeypatch.delenv("ICM_OFFLINE")

    def unreachable(url):
        raise OSError("no route to host")

    with pytest.raises(IcmError, match="place the file"):
        download.kodak(tmp_path / "k", opener=unreachable)
