"""`mrirecon train model=flow`: fit the normalizing-flow prior on the magnitude images of the
train split (never val or test), with the shared Trainer. Loss and validation in bits/dim."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import Dataset

from mrirecon.data.h5 import DeepInPyFile
from mrirecon.errors import UserError, configured
from mrirecon.nets.flow import ImageFlow, bits_per_dim, build_flow, dequantize, from_flow_space
from mrirecon.tasks.common import open_processed, plain, training_setup, variant_of
from mrirecon.tasks.train_common import positive, resume_path, settings_of, training_data
from mrirecon.training import Trainer

log = logging.getLogger(__name__)


class MagnitudeDataset(Dataset):
    """Items: 'img' (1, X, Y) float32, the magnitude of the reference image, and 'index' ()."""

    def __init__(self, data: DeepInPyFile, indices: np.ndarray) -> None:
        self.data, self.indices = data, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i = int(self.indices[k])
        img = np.abs(self.data.read_image(i)).astype(np.float32)
        return {"img": torch.from_numpy(img)[None], "index": torch.tensor(i)}


def require_magnitude(cfg: DictConfig, what: str) -> int:
    """The variant's bit depth, or a UserError for complex variants (bits null)."""
    bits, _ = variant_of(cfg)
    if bits is None:
        raise UserError(
            f"data={cfg.data.name}: {what} models real magnitude images of a quantised variant (data.bits 4 or 8, "
            "e.g. data=4bit_quarter); this variant keeps complex images (data.bits null)"
        )
    return int(bits)


def validate_flow(flow: ImageFlow, data: MagnitudeDataset, bits: int, batch_size: int, seed: int,
                  device: torch.device, temperature: float) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Mean bits/dim of the val images (fixed dequantisation noise) and a 2x2 grid of samples."""
    generator = torch.Generator().manual_seed(seed)
    values = []
    for start in range(0, len(data), batch_size):
        x = torch.stack([data[k]["img"] for k in range(start, min(start + batch_size, len(data)))]).to(device)
        values.append(bits_per_dim(flow, dequantize(x, bits, generator), bits))
    bpd = float(torch.cat(values).mean())
    samples = from_flow_space(flow.sample(4, temperature, torch.Generator().manual_seed(seed)), bits)
    s = samples.clamp(0, 1)[:, 0].cpu().numpy()
    grid = np.block([[s[0], s[1]], [s[2], s[3]]])
    return {"val_bpd": bpd}, {"samples": grid}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train the flow `model` on the train split of `data.path`; write checkpoints/ (kind 'flow',
    with the config, bit depth, image shape and split indices), tensorboard/ and metrics.csv."""
    bits = require_magnitude(cfg, "the flow prior")
    out, device = training_setup(cfg)
    settings = settings_of(cfg)
    settings.select = "val_bpd"
    t = cfg.train
    lr = positive("train.lr", t.lr)
    flip = bool(t.get("flip", False))
    temperature = float(t.get("sample_temperature", 0.7))
    resume = resume_path(cfg, out)
    data = open_processed(cfg)
    file_bits = data.attrs.get("bits")
    if file_bits is not None and int(file_bits) != bits:  # preprocess stores bits -1 for complex variants
        held = "complex images (bits null)" if int(file_bits) < 0 else f"{int(file_bits)}-bit images"
        raise UserError(f"data.path: {data.path} holds {held}, but data.bits is {bits}")
    splits = data.splits()
    if splits is None:
        raise UserError(f"{data.path}: no split indices stored; the flow trains on the train split only "
                        "(run 'mrirecon preprocess')")
    train_idx, val_idx = splits["train"], splits["val"]
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise UserError(f"{data.path}: the train and val splits must not be empty ({len(train_idx)} / {len(val_idx)} slices)")
    shape = (1, *data.shape)
    torch.manual_seed(settings.seed)  # the same initial weights for the same seed
    flow = configured("model", build_flow, plain(cfg.model), shape).to(device)
    train_set, val_set = MagnitudeDataset(data, train_idx), MagnitudeDataset(data, val_idx)
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)

    def loss_fn(batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(settings.seed * 7919 + step)
        x = batch["img"]
        if flip:  # random left-right flips
            flips = torch.rand(x.shape[0], generator=generator).to(x.device) < 0.5
            x = torch.where(flips[:, None, None, None], x.flip(-1), x)
        return bits_per_dim(flow, dequantize(x, bits, generator), bits).mean()

    trainer = Trainer(
        flow, optimizer, scheduler, loss_fn,
        lambda: validate_flow(flow, val_set, bits, int(t.val_batch_size), settings.seed, device, temperature),
        train_set, out, plain(cfg), settings, device,
        extra={"kind": "flow", "bits": bits, "shape": list(shape), "splits": {s: v.tolist() for s, v in splits.items()},
               **training_data(data, train_idx)},
    )
    log.info("training flow (%d levels x %d steps, %d parameters) on %d %dx%d %d-bit train slices of %s "
             "(%d val) -> %s", cfg.model.levels, cfg.model.steps, sum(p.numel() for p in flow.parameters()),
             len(train_idx), *data.shape, bits, cfg.data.path, len(val_idx), out)
    state = trainer.fit(resume)
    if state["history"]:
        last = state["history"][-1]
        log.info("done: epoch %d, val %.4f bits/dim (best %.4f); checkpoints in %s",
                 last["epoch"], last["val_bpd"], state["best"], out / "checkpoints")
    if not math.isfinite(state["best"]):
        log.warning("no epoch finished: best.pt was not written (raise train.max_minutes)")
    return state
