"""HEVC intra 4:4:4, the BPG-equivalent anchor, coded in-process by PyAV's libx265."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from icmkit.codecs.anchors._rawstream import StreamKind
from icmkit.codecs.anchors._rawvideo import RawVideoCodec, pyav_missing
from icmkit.codecs.base import Availability, QualitySpec
from icmkit.errors import IcmError, one_line


class Hevc444Codec(RawVideoCodec):
    """HEVC intra, YCbCr 4:4:4 8-bit, as ``bpgenc -f 444 -e x265 -c ycbcr -q q`` codes it.

    Route: RGB → full-range BT.601 YCbCr 4:4:4 8-bit (icmkit's own conversion) → one intra frame
    through PyAV's libx265 (preset veryslow, tune ssim, fixed QP ``q + 1``, psy-rd 0, psy-rdoq 0,
    no info SEI) → the raw Annex-B stream behind a header of 8–11 bytes (``.hevc``; not HEIF,
    whose ≈300 bytes of container BPG does not pay). Decoded in-process by PyAV's HEVC decoder.
    Knob ``q`` 0…50 as BPG's ``-q`` (lower = more bits); default grid 47, 42, 37, 32, 27, 22, 17,
    12 (CompressAI's BPG anchor grid).
    """

    name = "hevc444"
    description = "HEVC intra 4:4:4 (x265, BPG-equivalent settings), raw stream"
    extension = ".hevc"
    quality = QualitySpec(
        knob="q",
        grid=(47, 42, 37, 32, 27, 22, 17, 12),
        lo=0,
        hi=50,  # BPG's q + 1 must stay a valid 8-bit HEVC QP (≤ 51)
        default=28,
        rate_increases=False,
        doc="BPG quantiser: x265 codes at fixed QP q + 1; lower q = more bits",
    )
    stream_kind = StreamKind.HEVC_444
    bit_depth = 8
    subsample = False
    decoder = "hevc"
    pix_fmt = "yuv444p"

    def availability(self) -> Availability:
        reason = pyav_missing("libx265", self.decoder)
        return Availability(False, reason) if reason else Availability(True)

    def _encode_planes(self, planes: list[np.ndarray], width: int, height: int, quality: int) -> bytes:
        import av

        ctx = av.CodecContext.create("libx265", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, self.pix_fmt
        ctx.time_base = Fraction(1, 25)  # required by the wrapper; one frame, so never used
        ctx.options = {
            "preset": "veryslow",
            "tune": "ssim",
            "x265-params": f"qp={quality + 1}:psy-rd=0:psy-rdoq=0:info=0:log-level=error",
        }
        frame = av.VideoFrame(width, height, self.pix_fmt)
        for plane, samples in zip(frame.planes, planes):
            np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :width] = samples
        try:
            packets = [*ctx.encode(frame), *ctx.encode(None)]
        except av.error.FFmpegError as exc:
            raise IcmError(f"{self.name}: libx265 failed to encode ({one_line(exc)})") from exc
        return b"".join(bytes(packet) for packet in packets)
