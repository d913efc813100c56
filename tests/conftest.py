"""Shared fixtures: small generated images and a tiny finalised learned codec (random weights); and the seal:
no test may open a network connection (see :func:`no_network`)."""

from __future__ import annotations

import ipaddress
import socket
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from icmkit.codecs.learned import LearnedPixelCodec
from icmkit.models import MeanScaleHyperprior, VariableRateHyperprior
from icmkit.weights import save_weights


class NetworkUse(ConnectionError):
    """Raised by the guard where a test opens a connection to another host (an OSError, as offline)."""


def _loopback_or_local(family: int, address) -> bool:
    if family == getattr(socket, "AF_UNIX", None) or not isinstance(address, tuple):
        return True  # AF_UNIX paths (and other non-IP families) never leave the machine
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name: resolving and reaching it is network use


_ATTEMPTS = pytest.StashKey[list]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Turn a recorded connection attempt into the test's own failure (not a teardown error)."""
    result = yield
    attempts = item.stash.get(_ATTEMPTS, [])
    if attempts:
        pytest.fail(f"test opened network connections: {', '.join(attempts)}", pytrace=False)
    return result


@pytest.fixture(autouse=True)
def no_network(request, monkeypatch):
    """Fail any test that connects to another host: the suite runs offline and must not depend on it.
    Loopback and AF_UNIX stay allowed (torch's process groups rendezvous on 127.0.0.1). The attempt is
    refused and also recorded, so a test fails even when the code under test catches the error."""
    attempts: list[str] = request.node.stash.setdefault(_ATTEMPTS, [])
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address) -> None:
        if not _loopback_or_local(sock.family, address):
            attempts.append(repr(address))
            raise NetworkUse(f"tests must not use the network (connection to {address!r})")

    def guarded_connect(sock, address):
        check(sock, address)
        return connect(sock, address)

    def guarded_connect_ex(sock, address):
        check(sock, address)
        return connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)


# Codecs whose library comes from an optional extra: unavailable here, their tests skip with the reason. Every
# other registered codec rests on a hard dependency, so its tests fail when it is unavailable — a broken install
# must not vanish from CI as a shorter parametrisation.
OPTIONAL_EXTRAS = {"vvc": "vvc", "compressai-": "compressai"}


def _extra_of(name: str) -> str | None:
    return next((extra for prefix, extra in OPTIONAL_EXTRAS.items() if name.startswith(prefix)), None)


def codec_params(kind=None, exclude: tuple[str, ...] = ()) -> list:
    """Every registered codec (of ``kind``) as a pytest parameter: unavailable codecs of an optional extra are
    skipped with their reason; the test itself must call ``require_codec`` so that any other one fails."""
    from icmkit.codecs import list_codecs

    params = []
    for codec in list_codecs():
        if "@" in codec.name or codec.name in exclude or (kind is not None and codec.kind != kind):
            continue
        state = codec.availability()
        marks = ()
        if not state.ok and _extra_of(codec.name):
            marks = pytest.mark.skip(reason=f"{codec.name}: optional extra '{_extra_of(codec.name)}' ({state.reason})")
        params.append(pytest.param(codec.name, marks=marks, id=codec.name))
    return params


def require_codec(name: str):
    """The registered codec ``name``; a test fails (not skips) when a codec of a hard dependency is unavailable."""
    from icmkit.codecs import get_codec

    codec = get_codec(name)
    state = codec.availability()
    assert state.ok, f"{name} is unavailable though its library is a hard dependency: {state.reason}"
    return codec


@contextmanager
def registered_codecs(*codecs):
    """Register ``codecs`` for the enclosed block (streams name their codec in the header, so decoding them needs
    it registered); a name registered already is left as it is, and only what was added is removed after."""
    from icmkit.codecs import list_codecs, register_codec, unregister_codec

    known = {codec.name for codec in list_codecs()}
    added = [codec for codec in codecs if codec.name not in known]
    for codec in added:
        register_codec(codec)
    try:
        yield
    finally:
        for codec in added:
            unregister_codec(codec.name)


def synthetic_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients, a few edges and mild noise: compressible like a photo, not like noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = []
    for c in range(3):
        fx, fy, phase = rng.uniform(0.02, 0.12, 2).tolist() + [rng.uniform(0, 6.28)]
        channels.append(128 + 70 * np.sin(fx * xx + phase) * np.cos(fy * yy) + 30 * (xx > width * (0.3 + 0.2 * c)))
    image = np.stack(channels, axis=2) + rng.normal(0, 4, (height, width, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def labelled_folder(root, height: int, width: int):
    """Two synthetic photos with a labels.csv (classes 1 and 2): the smallest classification data set."""
    from PIL import Image

    (root / "labels.csv").write_text("file,class_index\n0.png,1\n1.png,2\n")
    for i in range(2):
        Image.fromarray(synthetic_photo(height, width, seed=i)).save(root / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    return synthetic_photo(70, 97)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = MeanScaleHyperprior(N=16, M=24).eval()
    model.update()
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(model, path, {"lmbda": 0.01})
    return str(path)


@pytest.fixture(scope="session")
def tiny_codec(tiny_weights) -> LearnedPixelCodec:
    return LearnedPixelCodec.from_weights_file(tiny_weights, name="icm-tiny", quality=1)


@pytest.fixture(scope="session")
def tiny_vr_weights(tmp_path_factory) -> str:
    """A finalised variable-rate pixel model (random weights, nonzero context residual) with 4 rate points."""
    torch.manual_seed(0)
    model = VariableRateHyperprior(N=16, M=24, qualities=4).eval()
    with torch.no_grad():  # a fresh model's context residual is zero: give the second pass something to do
        model.entropy_parameters[-1].weight.normal_(0, 0.05)
    model.update()
    path = tmp_path_factory.mktemp("weights") / "tiny-vr.safetensors"
    save_weights(model, path, {"lmbdas": [0.001, 0.003, 0.01, 0.03]}, slim=True)
    return str(path)


@pytest.fixture(scope="session")
def tiny_vr_codec(tiny_vr_weights):
    from icmkit.codecs.learned import VariableRatePixelCodec

    return VariableRatePixelCodec.from_weights_file(tiny_vr_weights, name="icm-tiny-vr")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Task-model tests run on one thread: quicker beside the other xdist worker, and reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_feature_weights(tmp_path_factory) -> str:
    """A small finalised DICM feature codec (random weights, two rate points) on EfficientNet-Lite0's real
    head (blocks.2)."""
    from icmkit.backbones import split_classifier
    from icmkit.models import DICMFeatureModel

    backbone = split_classifier("tf_efficientnet_lite0", "blocks.2")
    torch.manual_seed(0)
    model = DICMFeatureModel(
        backbone.info.channels,
        backbone="tf_efficientnet_lite0",
        split="blocks.2",
        head_digest=backbone.info.head_digest.hex(),
        N=32,
        M=32,
        hyper=32,
        re_levels=2,
        re_width=16,
        re_latent=16,
        qualities=2,
    ).eval()
    model.update()
    path = tmp_path_factory.mktemp("weights") / "tiny-feature.safetensors"
    save_weights(model, path, {"lmbda": 1.0})
    return str(path)


@pytest.fixture(scope="session")
def tiny_feature_codec(tiny_feature_weights):
    from icmkit.codecs.feature import FeatureCodec

    return FeatureCodec.from_weights_file(tiny_feature_weights, name="icm-feature-tiny")


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory):
    """A COCO folder of two synthetic 80×64 photos with one annotated box each."""
    import json

    from PIL import Image

    root = tmp_path_factory.mktemp("coco")
    (root / "images").mkdir()
    (root / "annotations").mkdir()
    images, annotations = [], []
    for i in range(2):
        Image.fromarray(synthetic_photo(64, 80, seed=i)).save(root / "images" / f"{i + 1:012d}.jpg")
        images.append({"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": 80, "height": 64})
        annotations.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "bbox": [10, 10, 30, 20],
                "area": 600,
                "iscrowd": 0,
                "segmentation": [[10, 10, 40, 10, 40, 30, 10, 30]],
            }
        )
    document = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}
    (root / "annotations" / "instances_tiny.json").write_text(json.dumps(document))
    return root


@pytest.fixture(scope="module", autouse=True)
def codecs_registered_by_the_module_leave_with_it():
    """Codecs a test module registers (a weights file named to the in-process CLI registers one, as in a user's
    process) are removed after it: the next module in the same worker starts with the built-ins, whatever ran
    before it."""
    from icmkit.codecs import list_codecs, unregister_codec

    before = {codec.name for codec in list_codecs()}
    yield
    for codec in list_codecs():
        if codec.name not in before:
            unregister_codec(codec.name)
