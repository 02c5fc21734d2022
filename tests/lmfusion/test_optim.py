"""The piecewise optimizer against steps computed by hand from DESIGN.md's update rule."""
import pytest
import torch

from lmfusion.optim import PiecewiseOptimizer


def _step(p, g, opt):
    p.grad = torch.tensor(g)
    opt.step()
    return p.detach().clone()


def test_first_step_quantises_update_to_half_and_one():
    # m = 0, so u = (1 - b1) * g = 0.1 * g: |u| = 0.1*0.005 = 5e-4 < 1e-3 -> 0.5; 0.1*1 -> 1; 0 -> 0
    p = torch.nn.Parameter(torch.tensor([1.0, 1.0, 1.0, 1.0]))
    opt = PiecewiseOptimizer([p], lr=0.1, betas=(0.9, 0.99))
    out = _step(p, [0.005, -1.0, 0.0, -0.005], opt)
    assert torch.allclose(out, torch.tensor([1 - 0.05, 1 + 0.1, 1.0, 1 + 0.05]))
    # m = 0.99*0 + 0.01*g
    assert torch.allclose(opt.state[p]["exp_avg"], torch.tensor([5e-5, -0.01, 0.0, -5e-5]))


def test_second_step_uses_momentum_with_beta1_and_updates_it_with_beta2():
    p = torch.nn.Parameter(torch.tensor([0.0]))
    opt = PiecewiseOptimizer([p], lr=0.01, betas=(0.9, 0.99))
    _step(p, [1.0], opt)                     # u = 0.1 -> q = 1: p = -0.01; m = 0.01
    out = _step(p, [-0.0115], opt)           # u = 0.9*0.01 + 0.1*(-0.0115) = 0.00785 -> q = 1
    assert torch.allclose(out, torch.tensor([-0.02]))
    assert torch.allclose(opt.state[p]["exp_avg"], torch.tensor([0.99 * 0.01 + 0.01 * -0.0115]))
    out = _step(p, [-0.1], opt)              # u = 0.9*0.0097835 + 0.1*(-0.1) = -0.00119485 -> q = -1
    assert torch.allclose(out, torch.tensor([-0.01]))
    out = _step(p, [-0.0851], opt)           # m = 0.00868567..., u = 0.00781710 - 0.00851 = -0.00069 -> -0.5
    assert torch.allclose(out, torch.tensor([-0.01 + 0.005]))


def test_decoupled_weight_decay_is_applied_before_the_update():
    p = torch.nn.Parameter(torch.tensor([2.0]))
    opt = PiecewiseOptimizer([p], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    out = _step(p, [1.0], opt)               # 2 * (1 - 0.05) - 0.1 * 1
    assert torch.allclose(out, torch.tensor([1.8]))


def test_bad_hyperparameters_are_refused():
    p = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="lr"):
        PiecewiseOptimizer([p], lr=0)
    with pytest.raises(ValueError, match="betas"):
        PiecewiseOptimizer([p], betas=(0.9, 1.0))


def test_it_trains_a_small_regression():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    w_true = torch.tensor([[1.0], [-2.0], [0.5], [0.0]])
    lin = torch.nn.Linear(4, 1, bias=False)
    opt = PiecewiseOptimizer(lin.parameters(), lr=0.02)
    first = None
    for _ in range(300):
        loss = ((lin(x) - x @ w_true) ** 2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.01 * first
