"""Neural-network building blocks shared by learned codecs."""

from icmkit.layers.gdn import GDN
from icmkit.layers.integer import ExactIntegerNet

__all__ = ["GDN", "ExactIntegerNet"]
