"""The learned-codec contract, in CompressAI's shape so that its models wrap in a few lines.

``forward(x)`` → ``{"x_hat", "likelihoods"}`` (training); ``update()`` builds the integer coding tables
and the integer hyper-decoder (the explicit *finalise* step); ``compress(x)`` → ``{"strings", "shape"}``;
``decompress(strings, shape)`` → ``{"x_hat"}``. Inputs are in [0, 1] with H and W multiples of
:attr:`CompressionModel.stride` — the codec layer pads and crops for the user.
"""

from __future__ import annotations

import torch
from torch import nn

from icmkit.entropy._tables import HasTables
from icmkit.entropy.factorized import EntropyBottleneck
from icmkit.errors import IcmError
from icmkit.layers.integer import ExactIntegerNet


class NotFinalizedError(IcmError, RuntimeError):
    """Coding was asked of a model whose tables were never built (``update()`` not called)."""


class CompressionModel(nn.Module):
    """Base of icmkit's learned codec models: the module's contract, the auxiliary loss and the finalise step."""

    stride: int = 64  # H and W must be multiples of this
    # Top-level float networks whose ExactIntegerNet twins are what coding runs (shipped files omit them).
    float_twins: tuple[str, ...] = ()

    def is_float_twin(self, key: str) -> bool:
        """Whether state-dict entry ``key`` belongs to a float twin (not read by coding)."""
        return key.split(".", 1)[0] in self.float_twins

    def coding_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict without the float twins: what encoding and decoding read."""
        return {k: v for k, v in self.state_dict().items() if not self.is_float_twin(k)}

    def aux_loss(self) -> torch.Tensor:
        """Loss that trains the factorised priors' quantiles; optimise it with its own optimiser."""
        losses = [m.aux_loss() for m in self.modules() if isinstance(m, EntropyBottleneck)]
        return torch.stack(losses).sum() if losses else torch.zeros(())

    def aux_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name.endswith("quantiles")]

    def main_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.endswith("quantiles")]

    @torch.no_grad()
    def update(self) -> None:
        """Finalise after training: build coding tables and the integer twins of hyper-decoders."""
        for module in self.modules():
            if isinstance(module, HasTables):
                module.update()
        self._quantize_integer_nets()

    def _quantize_integer_nets(self) -> None:
        """Subclasses fill their :class:`ExactIntegerNet` twins from the float networks."""

    @property
    def finalized(self) -> bool:
        tables = [m.finalized for m in self.modules() if isinstance(m, HasTables)]
        integer = [bool(m.weight_buffers_set()) for m in self.modules() if isinstance(m, ExactIntegerNet)]
        return all(tables) and all(integer)

    def require_finalized(self) -> None:
        if not self.finalized:
            raise NotFinalizedError("model is not finalised: call model.update() after training, before coding")
