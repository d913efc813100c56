"""A classifier as a MoCo encoder: its trunk up to the pooled penultimate features, then a projection head.

    images in [0, 1] ─ normalise (the classifier's mean / std) ─ trunk ─ feature map (N, C, h, w)
        ─ the classifier's global pool ─ (N, C) ─ MLP C → C → d (MoCo v2) ─ L2-normalise ─ embedding (N, d)

The classifier is kept whole (its last linear layer frozen and unused) so that its state dict loads back
with :func:`icmkit.pretrained.classifiers.load_classifier` once trained.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import MLP


class ClassifierTrunk(nn.Module):
    """The feature-map and pooling halves of a timm classifier or a torchvision ResNet.

    Args:
        model: The classifier (any timm model, or a torchvision ResNet); shared, not copied.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        if hasattr(model, "forward_features") and hasattr(model, "forward_head"):  # every timm model
            self.is_timm = True
            self.width = int(model.num_features)
        elif all(hasattr(model, a) for a in ("conv1", "bn1", "relu", "maxpool", "layer4", "avgpool", "fc")):
            self.is_timm = False
            self.width = int(model.fc.in_features)
        else:
            raise ValueError(f"cannot train a {type(model).__name__} with MoCo: timm models and ResNets only")

    def classifier_layer(self) -> nn.Module:
        return self.model.get_classifier() if self.is_timm else self.model.fc

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images → the last feature map before global pooling (ResNet: layer4)."""
        if self.is_timm:
            return self.model.forward_features(x)
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))

    def pool(self, feature_map: torch.Tensor) -> torch.Tensor:
        if self.is_timm:
            return self.model.forward_head(feature_map, pre_logits=True)
        return torch.flatten(self.model.avgpool(feature_map), 1)


class EmbeddingEncoder(nn.Module):
    """MoCo's encoder f: images in [0, 1] → L2-normalised embeddings; see the module docstring.

    Args:
        classifier: The model, or a :class:`ClassifierTrunk` around it (:mod:`icmkit.ssl.filtered` passes one
            with an RE module inside). Everything but its last linear layer is trained.
        mean: Per-channel RGB mean of the classifier's input normalisation.
        std: Per-channel RGB standard deviation, likewise.
        projection_dim: Width ``d`` of the embeddings.
        bn_groups: The batch runs through the trunk in that many consecutive chunks, each with its own
            BatchNorm statistics (the per-GPU batches of MoCo's shuffling BN, see :mod:`icmkit.ssl.shuffle`).
    """

    def __init__(
        self,
        classifier: nn.Module | ClassifierTrunk,
        mean: Sequence[float],
        std: Sequence[float],
        projection_dim: int = 128,
        bn_groups: int = 1,
    ):
        super().__init__()
        self.trunk = classifier if isinstance(classifier, ClassifierTrunk) else ClassifierTrunk(classifier)
        width = self.trunk.width
        self.projection = MLP(width, [width, projection_dim], activation_layer=nn.ReLU)
        self.embedding_dim = projection_dim
        self.bn_groups = bn_groups
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        # load_classifier hands out frozen models in eval mode: train everything but the unused classifier.
        self.requires_grad_(True)
        self.trunk.classifier_layer().requires_grad_(False)
        self.train()

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] → the classifier's input (its own mean / std)."""
        return (images - self.mean) / self.std

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk.feature_map(self.normalise(images))

    def bn_chunks(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The consecutive BN groups the batch runs through the trunk in."""
        return images.chunk(self.bn_groups) if self.bn_groups > 1 else (images,)

    def embed(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features ``(N, C)`` → L2-normalised embeddings ``(N, d)``."""
        return F.normalize(self.projection(pooled), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(torch.cat([self.trunk.pool(self.feature_map(chunk)) for chunk in self.bn_chunks(images)]))

    def classifier_state_dict(self) -> dict[str, torch.Tensor]:
        """The classifier's own state dict (what ``load_classifier(name, weights=file)`` reads), on the CPU."""
        return {k: v.detach().cpu().contiguous() for k, v in self.trunk.model.state_dict().items()}
