"""Adam (Kingma & Ba, 2015) for the staged fit, without ``torch.optim``.

The first ``torch.optim`` optimiser a process builds imports ``torch._dynamo`` (its methods are wrapped to keep
``torch.compile`` out), which takes 1.1 s on the 2-core CPU: a tenth of a one-photo ``redafit fit``, and paid
again by every ``--jobs`` worker. The fit needs none of what that buys, so this is Adam's update with
``torch.optim.Adam``'s defaults (no weight decay, no AMSGrad), its state in the same form (``step``, ``exp_avg``,
``exp_avg_sq`` per parameter) and its floating-point operations in the same order: the fits are bit-identical
(``tests/fit/test_adam.py``). The rig's init network, trained once at set-up with a one-cycle schedule, still uses
``torch.optim``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class Adam:
    """Adam over parameter groups (dicts with ``params`` and ``lr``; ``param_groups[i]["lr"]`` may be changed
    between steps, as a learning-rate schedule does)."""

    def __init__(self, groups: Iterable[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param_groups = [dict(g, params=list(g["params"])) for g in groups]
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.state: dict[torch.Tensor, dict] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        for g in self.param_groups:
            lr = g["lr"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                st = self.state.get(p)
                if st is None:
                    st = self.state[p] = {"step": torch.tensor(0.0),
                                          "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                          "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
                st["step"] += 1
                m, v = st["exp_avg"], st["exp_avg_sq"]
                m.lerp_(grad, 1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                t = st["step"].item()
                step_size = lr / (1 - beta1 ** t)
                denom = (v.sqrt() / (1 - beta2 ** t) ** 0.5).add_(self.eps)
                p.addcdiv_(m, denom, value=-step_size)
