"""Differentiable entropy models and their integer coding tables, coded with constriction.

Written here (not imported from CompressAI) because CompressAI pins numpy<2 and is unmaintained since
2025, and because tables must be stored with the weights for decoding to be machine-independent.
"""

from icmkit.entropy.coder import TableSet, decode_with_tables, encode_with_tables
from icmkit.entropy.factorized import EntropyBottleneck
from icmkit.entropy.gaussian import GaussianConditional

__all__ = ["EntropyBottleneck", "GaussianConditional", "TableSet", "decode_with_tables", "encode_with_tables"]

from icmkit.deprecation import renamed  # noqa: E402

__getattr__ = renamed(__name__, {"FactorizedPrior": "icmkit.entropy.factorized:EntropyBottleneck"})
