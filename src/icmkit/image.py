"""Reading user images into the codecs' input form (H×W×3 uint8 RGB) and writing decoded images.

Inputs are turned upright by their EXIF orientation; grayscale and palette images become RGB; alpha is
dropped with a warning; 16-bit images are rounded to 8 bits with a warning. The pixel count is checked
from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from icmkit.errors import InputImageError, ResourceLimitError
from icmkit.fileio import read_user_file
from icmkit.limits import check_avif_canvas, check_avif_frames, check_jpeg_scans, check_pixel_count

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".gif"}
_DEEP_REDECODED = ("PNG", "TIFF")  # formats whose 16-bit colour samples imagecodecs decodes in full
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


class IcmWarning(UserWarning):
    """A lossy but accepted conversion of the user's input (alpha dropped, bit depth reduced)."""


def check_rgb(image: object, label: str = "image") -> np.ndarray:
    """Refuse anything that is not a non-empty ``H×W×3`` uint8 array (the codecs' and task models' input)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        what = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InputImageError(f"{label}: expected an H×W×3 uint8 RGB array, got {what}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputImageError(f"{label}: empty image of shape {image.shape}")
    return np.ascontiguousarray(image)


def image_to_tensor(image: np.ndarray):
    """An ``H×W×3`` uint8 image as a ``(3, H, W)`` float32 tensor in [0, 1] (torch imported only here)."""
    import torch

    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255)


def load_rgb(source: str | Path | bytes, limit: int | None = None) -> np.ndarray:
    """Read an image file (path or bytes) as an upright H×W×3 uint8 RGB array.

    Bounded before decoding (:mod:`icmkit.limits`): a path is read only if it is a regular file of at most
    ``ICM_MAX_INPUT_BYTES``; the header's size is checked against the pixel limit (``limit``, default
    ``ICM_MAX_PIXELS``); a JPEG's scans are counted; of an animated or multi-page image only the first frame
    is decoded (with a warning)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, data = "<bytes>", bytes(source)
    else:
        name = str(source)
        data = read_user_file(source, None, InputImageError, label=name)
    handle = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(handle)
            check_pixel_count(*img.size, limit)
            if img.format in ("JPEG", "MPO"):
                check_jpeg_scans(data, name)
            elif img.format == "AVIF":  # its ispe box (the size Pillow reports) need not be the coded frame's
                check_avif_frames(data, name, limit)
                check_avif_canvas(data, img.size, name)
            _warn_if_animated(img, name)
            if _sixteen_bit_colour(img):
                img = _rounded_sixteen_bit(img, data, name)
            img.load()
            check_pixel_count(*img.size, limit)  # what was decoded (e.g. an AVIF whose frame outgrows its box)
            alpha = _has_alpha(img)  # before the transpose, whose copy forgets the format
            img = ImageOps.exif_transpose(img)
    except InputImageError:
        raise
    except UnidentifiedImageError:
        raise InputImageError(f"{name}: not an image format icmkit reads") from None
    except Image.DecompressionBombError:
        raise InputImageError(f"{name}: image too large to decode safely") from None
    except MemoryError:
        raise ResourceLimitError(f"{name}: not enough memory to decode this image") from None
    except Exception as exc:  # noqa: BLE001 — Pillow's plugins and imagecodecs fail on bad bytes in many ways
        raise InputImageError(f"{name}: corrupt or truncated image ({_short(exc)})") from None
    return to_rgb_array(img, name, alpha=alpha)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _warn_if_animated(img: Image.Image, name: str) -> None:
    """Say that only the first frame of an animation (APNG, GIF, WebP) or multi-page file (TIFF) is coded.
    The count is read from the header where the format keeps one (never by decoding the other frames). Not for
    MPO: a camera JPEG's further pictures are previews or depth maps, not frames."""
    if img.format == "MPO":
        return
    count = _declared_frames(img)
    if count is None:
        try:
            animated = bool(getattr(img, "is_animated", False))  # GIF: seeks to the second frame only
        except Exception:  # noqa: BLE001 — a broken second frame: the first is still what is coded
            animated = False
        if not animated:
            return
        what = "several frames"
    elif count > 1:
        what = f"{count:,} frames"
    else:
        return
    warnings.warn(f"{name}: {what}; only the first is coded", IcmWarning, stacklevel=4)


def _declared_frames(img: Image.Image) -> int | None:
    """Frames a PNG (acTL) or WebP declares in its header; None where counting would walk the file."""
    if img.format in ("PNG", "WEBP"):
        return int(getattr(img, "n_frames", 1) or 1)
    return None


def _sixteen_bit_colour(img: Image.Image) -> bool:
    """Whether the file stores more than 8 bits per colour sample in a mode Pillow holds as 8 bits
    (it decodes 16-bit RGB / RGBA / LA PNG and TIFF by dropping the low byte, and scales 16-bit PPM).
    Read from the decoder's raw mode before decoding; 16-bit grayscale stays exact (mode I;16)."""
    if img.mode.startswith("I") or not img.tile:
        return False
    args = img.tile[0][3]  # (decoder, extents, offset, args)
    rawmode = args[0] if isinstance(args, tuple) else args
    if isinstance(rawmode, str) and ";16" in rawmode:
        return True
    maxval = args[1] if isinstance(args, tuple) and len(args) > 1 else None  # PPM: (rawmode, declared maximum)
    return img.format == "PPM" and isinstance(maxval, int) and maxval > 255


def _rounded_sixteen_bit(img: Image.Image, data: bytes, name: str) -> Image.Image:
    """The image with every sample rounded from 16 to 8 bits (not truncated), its EXIF kept for orientation.
    Only the first frame is decoded: PNG's default image (an APNG's other frames are skipped), TIFF's first page."""
    warnings.warn(f"{name}: 16-bit {img.mode} image rounded to 8 bits per channel", IcmWarning, stacklevel=4)
    if img.format not in _DEEP_REDECODED:
        return img  # e.g. PPM: Pillow already scales by the declared maximum value
    import imagecodecs

    decode = imagecodecs.png_decode if img.format == "PNG" else imagecodecs.tiff_decode
    samples = np.asarray(decode(data))
    if samples.dtype != np.uint16 or samples.shape[:2] != (img.height, img.width):
        raise InputImageError(f"{name}: cannot decode its 16-bit samples ({samples.dtype}, {samples.shape})")
    rounded = Image.fromarray(_to_8_bits(samples, 65535.0))
    if exif := img.getexif():
        rounded.info["exif"] = exif.tobytes()
    return rounded


def _to_8_bits(samples: np.ndarray, peak: float) -> np.ndarray:
    return np.clip(np.round(samples.astype(np.float64) * (255.0 / peak)), 0, 255).astype(np.uint8)


def to_rgb_array(img: Image.Image, name: str = "image", alpha: bool | None = None) -> np.ndarray:
    """A PIL image as H×W×3 uint8 RGB; ``alpha``: whether it holds an alpha channel to warn about (None: judged
    from the image)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img)
        peak = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        warnings.warn(f"{name}: {mode} image rounded to 8 bits per channel", IcmWarning, stacklevel=3)
        return np.ascontiguousarray(np.repeat(_to_8_bits(array, peak)[..., None], 3, axis=2))
    if mode == "F":
        raise InputImageError(f"{name}: floating-point images are not supported")
    if _has_alpha(img) if alpha is None else alpha:
        warnings.warn(f"{name}: alpha channel dropped (codecs code RGB only)", IcmWarning, stacklevel=3)
    if mode != "RGB":
        img = img.convert("RGBA").convert("RGB") if mode == "P" else img.convert("RGB")
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise InputImageError(f"{name}: cannot convert mode {mode} to RGB")
    return np.ascontiguousarray(array)


def _has_alpha(img: Image.Image) -> bool:
    """Whether converting to RGB drops an alpha channel the file really holds. Not LAB (its "A" is a colour
    axis), nor an animated WebP whose frames are opaque: libwebp's animation decoder gives RGBA whenever the
    VP8X header's alpha flag is set, which encoders set for a whole animation (read from the decoded frame)."""
    if img.mode == "P":
        return "transparency" in img.info
    if img.mode not in _ALPHA_MODES:
        return False
    if img.format == "WEBP" and getattr(img, "n_frames", 1) > 1 and img.mode == "RGBA":
        return img.getchannel("A").getextrema()[0] < 255
    return True


def resize_shorter_side(image: np.ndarray, side: int, resample: Image.Resampling) -> np.ndarray:
    """Scale an H×W×3 image so its shorter side is ``side`` (aspect kept, neither side below ``side``)."""
    height, width = image.shape[:2]
    scale = side / min(height, width)
    size = (max(side, round(width * scale)), max(side, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, resample))


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


ImageLike = str | Path | bytes | np.ndarray | Image.Image


def read_image(image: ImageLike) -> np.ndarray:
    """Anything image-like → H×W×3 uint8 RGB (paths and bytes are decoded, EXIF-rotated)."""
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        return check_rgb(image)
    if isinstance(image, Image.Image):
        return to_rgb_array(image)
    return load_rgb(image)
