"""VVC intra 4:2:0 10-bit, coded by vvenc through the static FFmpeg of ``imageio-ffmpeg``."""

from __future__ import annotations

import functools
import importlib.util
import subprocess

import numpy as np

from icmkit.codecs.anchors._rawstream import StreamKind
from icmkit.codecs.anchors._rawvideo import RawVideoCodec, pyav_missing
from icmkit.codecs.base import Availability, QualitySpec
from icmkit.errors import IcmError

INSTALL_HINT = "install the 'vvc' extra: pip install 'icmkit[vvc]' (imageio-ffmpeg with libvvenc)"

# A single picture coded as the all-intra configuration would: no GOP structure (whose reference
# picture lists cost ~100 bytes of SPS), no access-unit delimiter, no HRD parameters.
VVENC_PARAMS = "IntraPeriod=1:GOPSize=1:AccessUnitDelimiter=0:HrdParametersPresent=0"


@functools.lru_cache(maxsize=1)
def _ffmpeg_with_vvenc() -> str | None:
    """Path of imageio-ffmpeg's executable when it has libvvenc, else None (probed once)."""
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        return None
    import imageio_ffmpeg

    try:
        exe = imageio_ffmpeg.get_ffmpeg_exe()
        listing = subprocess.run(
            [exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return None
    return exe if any(line.split()[1:2] == ["libvvenc"] for line in listing.splitlines()) else None


class VvcCodec(RawVideoCodec):
    """VVC intra (H.266), YCbCr 4:2:0 10-bit, vvenc preset medium at a fixed QP.

    Route: RGB → full-range BT.601 YCbCr, chroma 2×2-averaged to 4:2:0, 10-bit (icmkit's own
    conversion: vvenc takes only yuv420p10le) → raw planes piped to imageio-ffmpeg's static
    ``ffmpeg -c:v libvvenc -preset medium -qp QP -qpa 0`` (no perceptual QP adaptation, as PSNR
    work wants), one all-intra picture → the raw Annex-B stream behind the same 8–11-byte header as
    ``hevc444`` (``.vvc``). Decoded in-process by PyAV's (FFmpeg's) VVC decoder. VTM itself is not
    installable here, so this is vvenc, not the VTM reference. Knob: QP 0…63 (lower = more bits);
    default grid 47, 42, 37, 32, 27, 22.
    """

    name = "vvc"
    description = "VVC intra 4:2:0 10-bit (vvenc medium via imageio-ffmpeg), raw stream"
    extension = ".vvc"
    quality = QualitySpec(
        knob="qp",
        grid=(47, 42, 37, 32, 27, 22),
        lo=0,
        hi=63,
        default=32,
        rate_increases=False,
        doc="vvenc quantisation parameter (10-bit scale); lower = more bits",
    )
    stream_kind = StreamKind.VVC_420
    bit_depth = 10
    subsample = True
    decoder = "vvc"
    pix_fmt = "yuv420p10le"

    def availability(self) -> Availability:
        if _ffmpeg_with_vvenc() is None:
            return Availability(False, INSTALL_HINT)
        reason = pyav_missing(self.decoder)
        return Availability(False, f"{reason} (needed to decode VVC)") if reason else Availability(True)

    def _encode_planes(self, planes: list[np.ndarray], width: int, height: int, quality: int) -> bytes:
        command = [
            _ffmpeg_with_vvenc(), "-hide_banner", "-nostdin", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", self.pix_fmt, "-s", f"{width}x{height}", "-i", "pipe:0",
            "-frames:v", "1", "-c:v", "libvvenc", "-preset", "medium", "-qp", str(quality), "-qpa", "0",
            "-vvenc-params", VVENC_PARAMS, "-f", "vvc", "pipe:1",
        ]  # fmt: skip
        raw = b"".join(p.astype("<u2", copy=False).tobytes() for p in planes)
        try:
            done = subprocess.run(command, input=raw, capture_output=True)
        except OSError as exc:
            raise IcmError(f"{self.name}: cannot run ffmpeg ({exc})") from exc
        if done.returncode or not done.stdout:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            why = lines[-1] if lines else "no output"
            raise IcmError(f"{self.name}: ffmpeg/libvvenc failed (exit {done.returncode}): {why}")
        return done.stdout
