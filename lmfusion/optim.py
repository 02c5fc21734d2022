"""The paper's "piecewise optimizer": a sign-like update with a dead zone, as torch.optim.Optimizer.

For each parameter p with gradient g and momentum m (initially 0):
    p <- p * (1 - lr * weight_decay)                 (decoupled weight decay)
    u  = beta1 * m + (1 - beta1) * g
    q  = 0 where u == 0; sign(u) * 0.5 where 0 < |u| < threshold; sign(u) otherwise
    p <- p - lr * q
    m <- beta2 * m + (1 - beta2) * g
"""
from __future__ import annotations

import torch
from torch.optim import Optimizer


class PiecewiseOptimizer(Optimizer):
    def __init__(self, params, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0, threshold: float = 1e-3):
        if lr <= 0:
            raise ValueError(f"PiecewiseOptimizer lr: expected > 0, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"PiecewiseOptimizer betas: expected each in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay,
                                      threshold=threshold))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2) = group["lr"], group["betas"]
            wd, thr = group["weight_decay"], group["threshold"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p)
                m = state["exp_avg"]
                if wd:
                    p.mul_(1 - lr * wd)
                u = m * b1 + g * (1 - b1)
                q = torch.sign(u) * torch.where(u.abs() < thr, 0.5, 1.0)
                p.add_(q, alpha=-lr)
                m.mul_(b2).add_(g, alpha=1 - b2)
        return loss
