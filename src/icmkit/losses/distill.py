"""Logit distillation (Hinton et al. 2015): ``T²·KL(softmax(teacher/T) ‖ softmax(student/T))``."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def logit_distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    t = temperature
    return (
        F.kl_div(
            F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="batchmean", log_target=True
        )
        * t
        * t
    )
