"""The flow prior's loss: dequantisation inside each level's bin and bits per dimension that
fall while a flow trains."""

from __future__ import annotations

import torch
from tiny_training import image_items

from mrirecon.data.batch import collate
from mrirecon.losses.bits_per_dim import BitsPerDim, dequantize
from mrirecon.nets import build_net
from mrirecon.nets.flow import from_flow_space, to_flow_space

CONFIG = {"name": "flow", "levels": 2, "steps": 1, "hidden_channels": 8, "bins": 4}


def test_dequantisation_stays_in_the_level_bin():
    x = torch.arange(16).float().div(15).reshape(1, 1, 4, 4)
    v = dequantize(x, 4, torch.Generator().manual_seed(0))
    k = torch.arange(16).float().reshape(1, 1, 4, 4)
    assert ((v + 0.5) * 16 >= k).all() and ((v + 0.5) * 16 < k + 1).all()
    assert torch.allclose(from_flow_space(to_flow_space(x, 8), 8), x, atol=1e-6)
    assert torch.allclose(to_flow_space(x, 4), (k + 0.5) / 16 - 0.5)


def test_bits_per_dim_decreases_in_a_few_steps():
    torch.manual_seed(0)
    flow = build_net(CONFIG, (1, 8, 8))
    images = torch.rand(8, 8, 8, generator=torch.Generator().manual_seed(0)).mul(15).round().div(15)
    batch = collate(image_items(images))
    loss = BitsPerDim(bits=4)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    values = []
    for step in range(30):
        opt.zero_grad()
        value = loss(flow, batch, torch.Generator().manual_seed(step))
        value.backward()
        opt.step()
        values.append(float(value.detach()))
    assert values[-1] < values[0] - 0.2, values
