#!/usr/bin/env python
"""DBP training speed at DeepInPy's own architecture: mrirecon against DeepInPy's code.

Both train DeepInPy's default DBP (ResNet: 64 channels, 3 blocks, kernel 7, reflection
padding; 4 unrolls, 3 ADMM steps, CG at most 10 iterations with eps 1e-4, l2lam_init 1e-3,
stdev 0 (hard data consistency); supervised loss; Adam lr 1e-3) on the same slices of the
simulated sample's train split, the same batches in the same order, starting from the same
weights. mrirecon runs `method=dbp model=resnet_deepinpy` through its training loss (data
normalised by max |A^H y|, no augmentation); DeepInPy runs `scripts/deepinpy_dbp_reference.py`,
a faithful re-implementation of its published code (its uncentred k-space convention; the
data converted exactly). Steps alternate between them; prints the median seconds per step, the
median of the per-pair speed-ups (DeepInPy time / mrirecon time: > 1 means mrirecon is faster),
for mrirecon in float32 and with `hardware.amp=true` (the denoiser under bf16 autocast), and the
CG iterations per step (DeepInPy: iterations; mrirecon: applications of A^H A, one more per
warm-started solve).

Usage: python scripts/bench_same_arch.py [--cases quarter,full] [--batch 2] [--repeats 5]
       [--threads 2] [--device cpu]
A CPU without native bf16 (hardware.amp's slowdown there) is emulated by limiting oneDNN's
instruction set: ONEDNN_MAX_CPU_ISA=AVX512_CORE (AVX-512 without BF16) or AVX2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import deepinpy_dbp_reference as deepinpy
import h5py
import numpy as np
import torch

from mrirecon.data.batch import Batch
from mrirecon.data.h5 import whole_grid
from mrirecon.losses.supervised import SquaredErrorLoss
from mrirecon.methods import build_method
from mrirecon.nets import build_net
from mrirecon.physics.sense import SenseOperator
from mrirecon.training.hardware import cpu_name, native_bf16

CASES = {"quarter": "4bit_quarter", "full": "4bit_full"}  # processed variants of the sample
DBP = {"num_unrolls": 4, "num_admm": 3, "cg_max_iter": 10, "cg_eps": 1e-4, "l2lam_init": 1e-3}
NET = {"channels": 64, "num_blocks": 3, "kernel_size": 7}


def load_batches(variant: str, batch: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Batches of the train split of outputs/data/<variant>.h5 (made by mrirecon preprocess)."""
    path = Path(f"outputs/data/{variant}.h5")
    if not path.is_file():
        sys.exit(f"error: {path} is missing: run 'mrirecon preprocess data={variant}' first")
    with h5py.File(path, "r") as f:
        train = np.asarray(f.attrs["split_train"])
        take = lambda key: torch.from_numpy(np.stack([f[key][i] for i in train]))  # noqa: E731
        img, ksp, maps, mask = take("imgs"), take("ksp"), take("maps"), take("masks").float()
    n = len(train) // batch * batch
    return [
        {k: v[i : i + batch].to(device) for k, v in {"img": img, "ksp": ksp, "maps": maps, "mask": mask}.items()}
        for i in range(0, n, batch)
    ]


class Counter:
    """Counts SenseOperator.normal calls (one per CG iteration, plus one per warm start)."""

    def __init__(self) -> None:
        self.calls = 0
        original = SenseOperator.normal

        def normal(op: SenseOperator, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return original(op, x)

        SenseOperator.normal = normal  # type: ignore[method-assign]


def mrirecon_step(batches: list[dict[str, torch.Tensor]], device: torch.device, amp: bool = False):
    torch.manual_seed(0)
    method = build_method(
        {"name": "dbp", **DBP, "stdev": 0.0}, denoiser=build_net({"name": "resnet_deepinpy", **NET})
    ).to(device)
    method.amp = amp  # hardware.amp=true: the denoiser under bf16 autocast
    opt = torch.optim.Adam(method.parameters(), lr=1e-3)
    state = {"k": 0}

    def step() -> None:
        data = batches[state["k"] % len(batches)]
        state["k"] += 1
        opt.zero_grad()
        b = data["img"].shape[0]
        acquired = torch.tensor([whole_grid(data["img"].shape)] * b, device=device)
        noise_std, index = torch.zeros(b, device=device), torch.arange(b, device=device)
        batch = Batch(data["ksp"], data["maps"], data["mask"], noise_std, index, acquired, img=data["img"])
        SquaredErrorLoss()(method, batch, torch.Generator().manual_seed(0)).backward()
        opt.step()

    return step


def deepinpy_step(batches: list[dict[str, torch.Tensor]], device: torch.device):
    torch.manual_seed(0)
    model = deepinpy.DeepBasisPursuitRecon(
        **DBP, latent_channels=NET["channels"], num_blocks=NET["num_blocks"], kernel_size=NET["kernel_size"]
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    converted = [deepinpy.uncentred(b["ksp"] * b["mask"][:, None], b["mask"]) for b in batches]
    state = {"k": 0, "cg": []}

    def step() -> None:
        k = state["k"] % len(batches)
        state["k"] += 1
        y, mask = converted[k]
        opt.zero_grad()
        model.batch(batches[k]["maps"], mask)
        loss = deepinpy.loss_fun(model(y), batches[k]["img"])
        loss.backward()
        opt.step()
        state["cg"].append(sum(model.num_cg))

    return step, state


def timed(fn, device: torch.device) -> float:
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run_case(case: str, args: argparse.Namespace, device: torch.device, counter: Counter) -> None:
    batches = load_batches(CASES[case], args.batch, device)
    steps = {"mrirecon": mrirecon_step(batches, device), "mrirecon amp": mrirecon_step(batches, device, amp=True)}
    theirs, their_state = deepinpy_step(batches, device)
    for fn in (theirs, *steps.values()):
        fn()  # warm-up
    t_theirs: list[float] = []
    t_ours: dict[str, list[float]] = {k: [] for k in steps}
    ratios: dict[str, list[float]] = {k: [] for k in steps}
    cg_ours: list[int] = []
    for k in range(args.repeats):
        order = list(steps) if k % 2 else list(reversed(steps))
        b = timed(theirs, device)
        for name in order:
            before = counter.calls
            t_ours[name].append(timed(steps[name], device))
            ratios[name].append(b / t_ours[name][-1])
            if name == "mrirecon":
                cg_ours.append(counter.calls - before)
        t_theirs.append(b)
    shape = "x".join(str(s) for s in batches[0]["maps"].shape)
    cg_theirs = statistics.median(their_state["cg"][1:])
    print(
        f"{case:<8}{shape:<16}{'DeepInPy (reference)':<30}{statistics.median(t_theirs):>10.3f}{1:>10.2f}{cg_theirs:>8g}"
    )
    for name in steps:
        cg = f"{statistics.median(cg_ours):g}" if name == "mrirecon" else ""
        print(
            f"{case:<8}{shape:<16}{name + (' (bf16 denoiser)' if 'amp' in name else ' (float32)'):<24}"
            f"{statistics.median(t_ours[name]):>10.3f}{statistics.median(ratios[name]):>10.2f}{cg:>8}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="quarter,full")
    parser.add_argument("--batch", type=int, default=2, help="DeepInPy's default: 2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    counter = Counter()
    print(f"device {device}, threads {args.threads}, DeepInPy DBP {DBP}, ResNet {NET}; median of {args.repeats}")
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "not set")
    print(f"CPU {cpu_name()}, native bf16: {native_bf16()} (ONEDNN_MAX_CPU_ISA {isa})")
    print(f"{'case':<8}{'B x C x X x Y':<16}{'code':<30}{'s/step':>10}{'speed-up':>10}{'CG':>8}")
    for case in args.cases.split(","):
        run_case(case, args, device, counter)


if __name__ == "__main__":
    main()
