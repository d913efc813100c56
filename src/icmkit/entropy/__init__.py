"""Differentiable entropy models and their integer coding tables, coded with constriction.

Written here (not imported from CompressAI) because CompressAI pins numpy<2 and is unmaintained since
2025, and because tables must be stored with the weights for decoding to be machine-independent.
"""

from icmkit.entropy.coder import TableSet, decode_with_tables, encode_with_tables
from icmkit.entropy.factorized import FactorizedPrior
from icmkit.entropy.gaussian import GaussianConditional

__all__ = ["FactorizedPrior", "GaussianConditional", "TableSet", "decode_with_tables", "encode_with_tables"]
