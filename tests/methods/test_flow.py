"""The flow prior: invertibility, densities, training signal, the inverse-problem objectives."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_arrays

from mrirecon.errors import UserError, configured
from mrirecon.losses.bits_per_dim import bits_per_dim, dequantize
from mrirecon.methods import build_method
from mrirecon.methods.base import data_scale
from mrirecon.nets import build_net
from mrirecon.nets.flow import ImageFlow, to_flow_space
from mrirecon.physics.noise import complex_noise
from mrirecon.physics.sense import SenseOperator

TINY = {"name": "flow", "levels": 2, "steps": 1, "hidden_channels": 8, "bins": 4, "tail_bound": 3.0}


def tiny_flow(shape=(1, 16, 16), seed: int = 0, **kw) -> ImageFlow:
    torch.manual_seed(seed)
    return build_net({**TINY, **kw}, shape)


def trained_tiny_flow(images: torch.Tensor, steps: int = 30) -> ImageFlow:
    """A tiny flow with a few Adam steps on `images` (B, 1, H, W) in [0, 1] (ActNorm initialised)."""
    flow = tiny_flow(tuple(images.shape[1:]))
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        opt.zero_grad()
        bits_per_dim(flow, dequantize(images, 4, g), 4).mean().backward()
        opt.step()
    return flow.eval()


def test_invertible_z_to_x_to_z():
    flow = tiny_flow()
    flow.train()
    flow.log_prob(torch.rand(4, 1, 16, 16) - 0.5)  # data-dependent ActNorm initialisation
    flow.eval()
    z = torch.randn(3, flow.dim) * 0.8
    with torch.no_grad():
        v, logdet_inv = flow.decode(z)
        z2, logdet_fwd = flow.encode(v)
    assert v.shape == (3, 1, 16, 16)
    assert torch.allclose(z, z2, atol=1e-4)
    assert torch.allclose(logdet_inv, -logdet_fwd, atol=1e-2)


def test_log_prob_finite_and_consistent_with_decode():
    flow = tiny_flow(shape=(1, 32, 24)).eval()
    v = torch.rand(2, 1, 32, 24) - 0.5
    with torch.no_grad():
        lp = flow.log_prob(v)
        z, logdet = flow.encode(v)
    assert lp.shape == (2,) and torch.isfinite(lp).all()
    assert torch.allclose(lp, flow.base_log_prob(z) + logdet, rtol=1e-5)


@pytest.mark.parametrize("shape", [(1, 80, 64), (1, 320, 256)])
def test_default_config_builds_at_quarter_and_full_size(shape):
    flow = build_net({"name": "flow", "levels": 3, "steps": 1, "hidden_channels": 4}, shape).eval()
    with torch.no_grad():
        v, _ = flow.decode(torch.zeros(1, flow.dim))
    assert v.shape == (1, *shape)


def test_flow_config_errors():
    with pytest.raises(ValueError, match="^levels: 5 levels"):
        build_net({**TINY, "levels": 5}, (1, 80, 64))  # 80 is not divisible by 32
    with pytest.raises(ValueError, match="^steps: 0"):
        build_net({**TINY, "steps": 0}, (1, 16, 16))
    with pytest.raises(ValueError, match=r"^colour: unknown key \(network flow has: levels, steps"):
        build_net({**TINY, "colour": 3}, (1, 16, 16))
    with pytest.raises(UserError, match="^model.levels: 5 levels"):  # the CLI layer names the config key
        configured("model", build_net, {**TINY, "levels": 5}, (1, 80, 64))


def _problem(n: int = 2, shape=(16, 16)):
    a = tiny_arrays(n=n, coils=4, shape=shape, seed=3)
    img = torch.from_numpy(a["imgs"]).abs()
    img = (img / img.amax(dim=(1, 2), keepdim=True)).mul(15).round().div(15)  # 4-bit magnitude
    maps, mask = torch.from_numpy(a["maps"]), torch.from_numpy(a["masks"])
    op = SenseOperator(maps, mask)
    return img, op.forward(img.to(torch.complex64)), op


@pytest.mark.parametrize(
    "method,z_init",
    [
        ({"name": "flow_l1", "lam": 1e-2}, "zeros"),
        ({"name": "flow_l1", "lam": 1e-2, "z_norm": "l2"}, "random"),
        ({"name": "flow_logprob", "beta": 1e-3}, "forward"),
        ({"name": "flow_combined", "lam": 1e-2, "beta": 1e-3}, "zeros"),
        ({"name": "flow_combined", "lam": 1e-2, "beta": 1e-3}, "forward"),
    ],
)
def test_each_objective_is_lowered(method, z_init):
    img, y, op = _problem()
    flow = trained_tiny_flow(img[:, None], steps=10)
    solver = build_method({**method, "lr": 0.05, "iterations": 15, "z_init": z_init}, flow=flow, bits=4)
    sigma = torch.full((2,), 0.05)
    scale = data_scale(y, op)  # the method works on y / scale, with noise sigma / scale
    y_n, sigma_n = y / scale.reshape(-1, 1, 1, 1), sigma / scale
    with torch.no_grad():
        z0 = solver.initial_z(y_n, op)
        before, _ = solver.objective(z0, y_n, op, sigma_n)
        x = solver.reconstruct(y, op, sigma)
        assert x.shape == img.shape and x.is_complex()
        # the returned image is scale * G(z) for some z: compare its objective through a fresh encode
        z, _ = flow.encode(to_flow_space(x.real / scale.reshape(-1, 1, 1), 4)[:, None])
        after, _ = solver.objective(z, y_n, op, sigma_n)
    assert (after < before * 0.9).all(), (before, after)
    assert (x.imag == 0).all()


def test_objective_terms_follow_the_weights():
    _img, y, op = _problem(n=1)
    flow = tiny_flow().eval()
    z = torch.randn(1, flow.dim)
    sigma = torch.tensor([0.2])
    with torch.no_grad():
        dc, _ = build_method({"name": "flow_combined", "lam": 0.0, "beta": 0.0}, flow=flow, bits=4).objective(
            z, y, op, sigma
        )
        l1, _ = build_method({"name": "flow_l1", "lam": 0.5}, flow=flow, bits=4).objective(z, y, op, sigma)
        l2, _ = build_method({"name": "flow_l1", "lam": 0.5, "z_norm": "l2"}, flow=flow, bits=4).objective(
            z, y, op, sigma
        )
        lp, _ = build_method({"name": "flow_logprob", "beta": 2.0}, flow=flow, bits=4).objective(z, y, op, sigma)
        x, _neg_log_p = build_method({"name": "flow_logprob"}, flow=flow, bits=4).image(z)
    # the data term is -log p(y | x) for complex Gaussian noise with E|n|^2 = sigma^2 per measured
    # sample (real and imaginary parts N(0, sigma^2 / 2)), less its constant C M log(pi sigma^2)
    residual = (op.forward(x.to(y.dtype)) - y)[op.mask.expand_as(y) > 0]
    part = torch.distributions.Normal(0.0, 0.2 / math.sqrt(2))
    nll = -(part.log_prob(residual.real).sum() + part.log_prob(residual.imag).sum())
    assert torch.allclose(dc, nll - residual.numel() * math.log(math.pi * 0.2**2), rtol=1e-4)
    assert torch.allclose(l1 - dc, 0.5 * z.abs().sum(1), rtol=1e-4)
    assert torch.allclose(l2 - dc, 0.5 * z.pow(2).sum(1), rtol=1e-4)
    v = to_flow_space(x, 4)[:, None]
    assert torch.allclose(lp - dc, 2.0 * -flow.log_prob(v), rtol=1e-3)


def test_data_term_is_one_nat_per_measured_sample_at_the_truth():
    """At the true image, with noise drawn as the project draws it (physics.noise.complex_noise,
    E|n|^2 = sigma^2), the data term's expectation is the number of measured complex samples."""
    img, y, op = _problem(n=1)
    sigma = torch.tensor([0.05])
    noisy = y + complex_noise(tuple(y.shape), 0.05, torch.Generator().manual_seed(1)) * op.mask
    flow = tiny_flow().eval()
    solver = build_method({"name": "flow_combined", "lam": 0.0, "beta": 0.0}, flow=flow, bits=4)
    with torch.no_grad():
        z, _ = flow.encode(to_flow_space(img, 4)[:, None])
        dc, x = solver.objective(z, noisy, op, sigma)
    assert torch.allclose(x, img, atol=1e-4)  # G(z) is the true image
    samples = float(op.mask.sum()) * y.shape[1]
    assert abs(float(dc) / samples - 1) < 4 / math.sqrt(samples), float(dc) / samples


@pytest.mark.parametrize(
    "key,value",
    [("iterations", 0), ("iterations", -3), ("lam", -1e-3), ("lr", 0.0), ("z_init", "ones"), ("z_norm", "l3")],
)
def test_bad_method_settings(key, value):
    cfg = {"name": "flow_combined", "lam": 1e-3, "beta": 1e-4, key: value}
    with pytest.raises(ValueError, match=f"^{key}: "):
        build_method(cfg, flow=tiny_flow(), bits=4)
    with pytest.raises(ValueError, match="^beta: "):
        build_method({"name": "flow_logprob", "beta": -1.0}, flow=tiny_flow(), bits=4)


def test_restarts_give_their_mean_and_std_reproducibly_and_one_sample_gives_todays_image():
    """samples=K (z_init=random): the mean of K solves from the seeded draws 0..K-1 and their
    per-pixel std; the same again on a second call and per slice whatever the batch; samples=1
    is the one image of the start of seed 0, without a std; samples > 1 refuses another z_init."""
    img, y, op = _problem()
    flow = trained_tiny_flow(img[:, None], steps=10)
    cfg = {"name": "flow_l1", "lam": 1e-2, "lr": 0.05, "iterations": 5, "z_init": "random"}
    sigma = torch.full((2,), 0.05)
    one = build_method(cfg, flow=flow, bits=4)
    many = build_method({**cfg, "samples": 3}, flow=flow, bits=4)
    single, none = one.reconstruct_with_std(y, op, sigma)
    assert none is None and torch.equal(single, one.reconstruct(y, op, sigma))
    mean, std = many.reconstruct_with_std(y, op, sigma)
    assert std is not None and std.shape == img.shape and not std.is_complex() and (std > 0).any()
    scale = data_scale(y, op)
    y_n = y / scale.reshape(-1, 1, 1, 1)
    draws = torch.stack([many.solve(y_n, op, sigma / scale, k) for k in range(3)]) * scale.reshape(1, -1, 1, 1)
    assert torch.allclose(draws[0], single) and torch.allclose(mean, draws.mean(0))
    assert torch.allclose(std, (draws - mean).abs().pow(2).mean(0).sqrt())
    again, std_again = many.reconstruct_with_std(y, op, sigma)
    assert torch.equal(again, mean) and torch.equal(std_again, std)
    a = tiny_arrays(n=2, coils=4, shape=(16, 16), seed=3)  # _problem's arrays: slice 1 alone
    second = SenseOperator(torch.from_numpy(a["maps"][1:]), torch.from_numpy(a["masks"][1:]))
    alone, std_alone = many.reconstruct_with_std(y[1:], second, sigma[1:])
    assert torch.allclose(alone, mean[1:], atol=1e-5) and torch.allclose(std_alone, std[1:], atol=1e-5)
    with pytest.raises(ValueError, match=r"^samples: 3 restarts start from random latents, and z_init is 'forward'"):
        build_method({**cfg, "samples": 3, "z_init": "forward"}, flow=flow, bits=4)
    with pytest.raises(ValueError, match=r"^samples: "):
        build_method({**cfg, "samples": 0}, flow=flow, bits=4)


def test_size_mismatch_is_an_error():
    _img, y, op = _problem(n=1, shape=(32, 24))
    solver = build_method({"name": "flow_l1"}, flow=tiny_flow(), bits=4)
    with pytest.raises(ValueError, match="16x16"):
        solver.reconstruct(y, op)


@pytest.mark.parametrize(("name", "fixed"), [("flow_l1", "beta"), ("flow_logprob", "lam")])
def test_a_weight_the_method_fixes_is_refused_by_name(name, fixed):
    with pytest.raises(ValueError, match=rf"^{fixed}: {name} fixes it at 0"):
        build_method({"name": name, fixed: 0.1}, flow=tiny_flow(), bits=4)


@pytest.mark.parametrize("flip", [True, False])
def test_the_flow_family_trains_with_the_flips_and_temperature_it_is_given_and_records_them(flip):
    """train.flip and train.sample_temperature reach the flow's training (the old code dropped
    both: no flips, whatever the config said); the checkpoint records what was used, and a
    reconstruction's method config names the flips."""
    from tiny_training import image_items

    from mrirecon.data.batch import collate
    from mrirecon.training.trainables.flow import FlowTrainable

    train = {"flip": flip, "sample_temperature": 0.5, "loss": "bits_per_dim"}
    trainable = FlowTrainable.from_config({}, TINY, train, shape=(16, 16), bits=4, seed=0, amp=False)
    assert trainable.flip is flip and trainable.temperature == 0.5
    x = torch.linspace(0, 1, 16).repeat(4, 16, 1)  # left-right ramps: a flip changes each image
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    unflipped = bits_per_dim(trainable.module, dequantize(x[:, None], 4, g()), 4).mean().item()
    assert (trainable.loss(collate(image_items(x)), g()).item() != unflipped) is flip
    state = {**trainable.checkpoint_state(), "model": trainable.module.state_dict()}
    assert state["augmentations"] == {"flip": flip} and state["sample_temperature"] == 0.5
    rebuilt = FlowTrainable.from_checkpoint(state)
    assert rebuilt.flip is flip and rebuilt.temperature == 0.5
    _, recorded = rebuilt.reconstructor({"name": "flow_l1"}, 4, False)
    assert recorded.get("augment") == ("flip" if flip else None)
