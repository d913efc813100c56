"""The codecs icmkit registers by default, in the order `icm codecs` lists them."""

from __future__ import annotations

from icmkit.codecs.anchors import ANCHOR_CODECS
from icmkit.codecs.compressai_wrap import compressai_codecs
from icmkit.codecs.feature import FEATURE_CODECS
from icmkit.codecs.learned import LEARNED_CODECS
from icmkit.codecs.restored import restored_codecs

BUILTIN_CODECS = [*ANCHOR_CODECS, *restored_codecs(), *LEARNED_CODECS, *FEATURE_CODECS, *compressai_codecs()]
