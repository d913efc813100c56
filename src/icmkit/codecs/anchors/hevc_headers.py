"""The quantiser of an HEVC intra picture, read from its parameter sets and first slice header.

A restoration filter behind HEVC is conditioned on the picture's QP (issue 21); the stream must stay the standard
one, so the QP is read from the HEVC syntax itself: ``SliceQpY = 26 + init_qp_minus26 (PPS) + slice_qp_delta
(slice header)``. Reaching ``slice_qp_delta`` needs two SPS flags (``separate_colour_plane_flag``,
``sample_adaptive_offset_enabled_flag``) and three PPS fields, so both sets are parsed up to those fields (ITU-T
H.265 §7.3.2.2, §7.3.2.3, §7.3.6.1). Only what an intra picture needs: the first slice of an IRAP picture.
A stream whose QP varies inside the picture (adaptive quantisation, ``cu_qp_delta_enabled_flag``) still has one
slice QP, its base: the value returned.
"""

from __future__ import annotations

from icmkit.bitreader import BitReader
from icmkit.errors import BitstreamError

SPS, PPS = 33, 34
IRAP = range(16, 24)  # BLA, IDR, CRA and reserved IRAP types
IDR = (19, 20)
MAX_NAL_UNITS = 64  # an intra picture has a handful (VPS, SPS, PPS, SEI, slices); more before a slice is not one


def nal_units(annexb: bytes):
    """(type, RBSP payload after the 2-byte header) of each NAL unit of an Annex-B stream, in order."""
    starts = []
    pos = annexb.find(b"\x00\x00\x01")
    while pos >= 0 and len(starts) <= MAX_NAL_UNITS:
        starts.append(pos + 3)
        pos = annexb.find(b"\x00\x00\x01", pos + 3)
    for index, start in enumerate(starts):
        end = starts[index + 1] - 3 if index + 1 < len(starts) else len(annexb)
        unit = annexb[start:end].rstrip(b"\x00")  # trailing zeros belong to the next start code
        if len(unit) >= 2:
            yield (unit[0] >> 1) & 0x3F, unit[2:].replace(b"\x00\x00\x03", b"\x00\x00")


def _skip_profile_tier_level(bits: BitReader, sub_layers: int) -> None:
    bits.skip(88 + 8)  # general profile (88 bits) and level
    present = [(bits.read(1), bits.read(1)) for _ in range(sub_layers)]
    if sub_layers:
        bits.skip(2 * (8 - sub_layers))
    for profile, level in present:
        bits.skip(88 * profile + 8 * level)


def _skip_scaling_list_data(bits: BitReader) -> None:
    for size in range(4):
        for _ in range(0, 6, 3 if size == 3 else 1):
            if not bits.read(1):  # scaling_list_pred_mode_flag
                bits.ue()
                continue
            if size > 1:
                bits.se()
            for _ in range(min(64, 1 << (4 + (size << 1)))):
                bits.se()


def _sps_flags(rbsp: bytes) -> tuple[int, bool]:
    """(ChromaArrayType, sample_adaptive_offset_enabled_flag) of an SPS."""
    bits = BitReader(rbsp)
    bits.read(4)
    sub_layers = bits.read(3)
    bits.read(1)
    _skip_profile_tier_level(bits, sub_layers)
    bits.ue()  # sps_seq_parameter_set_id
    chroma = bits.ue()
    separate = bits.read(1) if chroma == 3 else 0
    bits.ue(), bits.ue()  # picture size
    if bits.read(1):  # conformance window
        for _ in range(4):
            bits.ue()
    bits.ue(), bits.ue(), bits.ue()  # bit depths, log2_max_pic_order_cnt_lsb_minus4
    ordering_all = bits.read(1)
    for _ in range(0 if ordering_all else sub_layers, sub_layers + 1):
        bits.ue(), bits.ue(), bits.ue()
    for _ in range(6):  # coding and transform block sizes, transform hierarchy depths
        bits.ue()
    if bits.read(1) and bits.read(1):  # scaling_list_enabled_flag, sps_scaling_list_data_present_flag
        _skip_scaling_list_data(bits)
    bits.read(1)  # amp_enabled_flag
    return (0 if separate else chroma), bool(bits.read(1))


def _pps_fields(rbsp: bytes) -> dict[str, int]:
    bits = BitReader(rbsp)
    bits.ue(), bits.ue()  # pps and sps ids
    fields = {"dependent_slices": bits.read(1), "output_flag": bits.read(1), "extra_bits": bits.read(3)}
    bits.read(1), bits.read(1)  # sign_data_hiding_enabled_flag, cabac_init_present_flag
    bits.ue(), bits.ue()  # default active reference counts
    fields["init_qp"] = 26 + bits.se()
    return fields


def slice_qp(annexb: bytes, codec: str = "hevc") -> int:
    """The slice QP (SliceQpY) of the first slice of the stream's first picture, which must be intra (IRAP)."""
    sps = pps = None
    try:
        for kind, rbsp in nal_units(annexb):
            if kind == SPS and sps is None:
                sps = _sps_flags(rbsp)
            elif kind == PPS and pps is None:
                pps = _pps_fields(rbsp)
            elif kind < 32:  # the first VCL unit: a slice segment
                if kind not in IRAP:
                    raise BitstreamError(f"{codec}: the first picture is not an intra (IRAP) picture")
                if sps is None or pps is None:
                    raise BitstreamError(f"{codec}: no SPS / PPS before the first slice")
                return _slice_qp(BitReader(rbsp), kind, sps, pps, codec)
    except (IndexError, ValueError):
        raise BitstreamError(f"{codec}: truncated or corrupt HEVC header (reading the QP)") from None
    raise BitstreamError(f"{codec}: no slice in the HEVC stream")


def _slice_qp(bits: BitReader, kind: int, sps: tuple[int, bool], pps: dict[str, int], codec: str) -> int:
    chroma_array_type, sao = sps
    if not bits.read(1):
        raise BitstreamError(f"{codec}: the first slice segment does not start the picture")
    bits.read(1)  # no_output_of_prior_pics_flag (IRAP)
    bits.ue()  # slice_pic_parameter_set_id
    bits.skip(pps["extra_bits"])
    if bits.ue() != 2:
        raise BitstreamError(f"{codec}: the first slice is not an intra (I) slice")
    if pps["output_flag"]:
        bits.read(1)
    if kind not in IDR:
        raise BitstreamError(f"{codec}: the first picture is not an IDR picture (its QP is not read)")
    if sao:
        bits.read(1)
        if chroma_array_type:
            bits.read(1)
    qp = pps["init_qp"] + bits.se()
    if not -48 <= qp <= 51:  # −QpBdOffset (16 bits) … 51
        raise BitstreamError(f"{codec}: slice QP {qp} is outside HEVC's range")
    return qp
