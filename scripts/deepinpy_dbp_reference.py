"""A faithful re-implementation of DeepInPy's deep basis pursuit training step (for benchmarks).

Not part of mrirecon. Follows DeepInPy's published code (github utcsilab/deepinpy, commit
eafebc7, MIT License, Copyright (c) 2019 Jon Tamir) line by line where it matters for speed
and numbers:
  - forwards/mcmri/mcmri.py: sense_forw / sense_adj (uncentred orthonormal fftn over the last
    two axes, mask applied on both sides), normal = adjoint(forward(x));
  - opt/conjgrad.py: conjgrad_priv (complex), absolute stopping test max_b ||r_b||^2 < eps^2,
    an initial residual b - (A x0 + l2lam x0);
  - opt/opt.py: zdot_batch, l2ball_proj_batch;
  - models/resnet/resnet.py: ResNet / ResNetBlock / Conv2dSame (reflection padding), the
    first block 2 -> latent with a 1x1 projection skip, the last block latent -> 2 without its
    final ReLU and with a 1x1 projection skip, a global residual; complex in and out through
    view_as_real and permutes;
  - recons/dbp/dbp.py: DeepBasisPursuitRecon.forward, including its per-ADMM-step convergence
    check (one more A x, one A^H and three norms under no_grad);
  - recons/recon.py: loss mean_b sum |x_hat - x|^2, Adam (Lightning's training step).
DeepInPy's data convention is k-space in uncentred FFT order; `uncentred` converts mrirecon's
centred data to it exactly, so both codes solve the same problem on the same data.
"""

from __future__ import annotations

import torch

# -- opt/opt.py ---------------------------------------------------------------------------------


def zdot_batch(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    batch = x1.shape[0]
    return torch.reshape(torch.conj(x1) * x2, (batch, -1)).sum(1)


def zdot_single_batch(x: torch.Tensor) -> torch.Tensor:
    return zdot_batch(x, x)


def l2ball_proj_batch(x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    reshape = (-1,) + (1,) * (len(x.shape) - 1)
    x = x.contiguous()
    q1 = torch.real(zdot_single_batch(x)).sqrt()
    q1_clamp = torch.min(q1, eps)
    return x * q1_clamp.reshape(reshape) / (1e-8 + q1.reshape(reshape))


# -- opt/conjgrad.py ----------------------------------------------------------------------------


def zconjgrad(x, b, aop_fun, max_iter=10, l2lam=0.0, eps=1e-4):
    """conjgrad_priv(complex=True) without its printing; returns (x, iterations)."""
    r = b - (aop_fun(x) + l2lam * x)
    p = r
    rsnot = zdot_single_batch(r).real
    rsold = rsnot
    rsnew = rsnot
    eps_squared = eps**2
    reshape = (-1,) + (1,) * (len(x.shape) - 1)
    num_iter = 0
    for i in range(max_iter):
        if rsnew.max() < eps_squared:
            if i == 0:
                x.requires_grad_()
            break
        ap = aop_fun(p) + l2lam * p
        pap = zdot_batch(p, ap).real
        alpha = (rsold / pap).reshape(reshape)
        x = x + alpha * p
        r = r - alpha * ap
        rsnew = zdot_single_batch(r).real
        beta = (rsnew / rsold).reshape(reshape)
        rsold = rsnew
        p = beta * p + r
        num_iter += 1
    return x, num_iter


# -- forwards/mcmri/mcmri.py --------------------------------------------------------------------


class MultiChannelMRI:
    def __init__(self, maps: torch.Tensor, mask: torch.Tensor) -> None:
        self.maps, self.mask = maps, mask

    def forward(self, x):
        coil = x[:, None, ...] * self.maps
        return torch.fft.fftn(coil, dim=[-1, -2], norm="ortho") * self.mask[:, None, ...]

    def adjoint(self, y):
        coil = torch.fft.ifftn(y * self.mask[:, None, ...], dim=[-1, -2], norm="ortho")
        return torch.sum(torch.conj(self.maps) * coil, 1, keepdim=False)

    def normal(self, x):
        return self.adjoint(self.forward(x))

    __call__ = forward


# -- models/resnet/resnet.py --------------------------------------------------------------------


class Conv2dSame(torch.nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, bias=True, padding_layer=torch.nn.ReflectionPad2d):
        super().__init__()
        ka = kernel_size // 2
        kb = ka - 1 if kernel_size % 2 == 0 else ka
        self.net = torch.nn.Sequential(
            padding_layer((ka, kb, ka, kb)), torch.nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)
        )

    def forward(self, x):
        return self.net(x)


class ResNetBlock(torch.nn.Module):
    def __init__(self, in_channels, latent_channels, out_channels, kernel_size, bias, batch_norm, final_relu):
        super().__init__()
        self.batch_norm, self.final_relu = batch_norm, final_relu
        self.conv0 = None if in_channels == out_channels else Conv2dSame(in_channels, out_channels, 1, bias=bias)
        self.conv1 = Conv2dSame(in_channels, latent_channels, kernel_size, bias=bias)
        self.conv2 = Conv2dSame(latent_channels, out_channels, kernel_size, bias=bias)
        if batch_norm:
            self.bn1, self.bn2 = torch.nn.BatchNorm2d(in_channels), torch.nn.BatchNorm2d(latent_channels)
        self.relu = torch.nn.ReLU()

    def forward(self, x):
        residual = self.conv0(x) if self.conv0 else x
        out = x
        if self.batch_norm:
            out = self.bn1(out)
        out = self.relu(out)
        out = self.conv1(out)
        if self.batch_norm:
            out = self.bn2(out)
        if self.final_relu:
            out = self.relu(out)
        out = self.conv2(out)
        out += residual
        return out


class ResNet(torch.nn.Module):
    def __init__(self, in_channels=2, latent_channels=64, num_blocks=3, kernel_size=7, bias=False, batch_norm=False):
        super().__init__()
        self.num_blocks = num_blocks
        blocks = [ResNetBlock(in_channels, latent_channels, latent_channels, kernel_size, bias, batch_norm, True)]
        blocks += [
            ResNetBlock(latent_channels, latent_channels, latent_channels, kernel_size, bias, batch_norm, True)
            for _ in range(num_blocks - 2)
        ]
        blocks.append(ResNetBlock(latent_channels, latent_channels, in_channels, kernel_size, bias, batch_norm, False))
        self.ResNetBlocks = torch.nn.ModuleList(blocks)

    def forward(self, x):
        x = torch.view_as_real(x)
        ndims = len(x.shape)
        permute_shape = list(range(ndims))
        permute_shape.insert(1, permute_shape.pop(-1))
        x = x.permute(permute_shape)
        temp_shape = x.shape
        x = x.reshape((x.shape[0], -1, x.shape[-2], x.shape[-1]))
        residual = x
        for n in range(self.num_blocks):
            x = self.ResNetBlocks[n](x)
        x += residual
        x = x.reshape(temp_shape)
        permute_shape = list(range(ndims))
        permute_shape.insert(ndims - 1, permute_shape.pop(1))
        x = x.permute(permute_shape)
        return torch.view_as_complex(x.contiguous())


# -- recons/dbp/dbp.py --------------------------------------------------------------------------


class DeepBasisPursuitRecon(torch.nn.Module):
    """DeepInPy's defaults: 4 unrolls, 3 ADMM steps, CG 10 / eps 1e-4, l2lam_init 1e-3, stdev 0."""

    def __init__(self, num_unrolls=4, num_admm=3, cg_max_iter=10, cg_eps=1e-4, l2lam_init=1e-3, stdev=0.0, **net):
        super().__init__()
        self.l2lam = torch.nn.Parameter(torch.tensor(l2lam_init))
        self.num_unrolls, self.num_admm = num_unrolls, num_admm
        self.cg_max_iter, self.cg_eps, self.stdev = cg_max_iter, cg_eps, stdev
        self.denoiser = ResNet(**net)
        self.num_cg: list[int] = []

    def batch(self, maps, masks):
        with torch.no_grad():
            self.A = MultiChannelMRI(maps, masks)
            self.eps = (maps.shape[1] * torch.sum(masks.reshape((masks.shape[0], -1)), dim=1)).sqrt() * self.stdev

    def forward(self, y):
        a = self.A
        x = a.adjoint(y)
        z = a(x)
        z_old = z
        u = z.new_zeros(z.shape)
        self.num_cg = []
        for _ in range(self.num_unrolls):
            r = self.denoiser(x)
            for _ in range(self.num_admm):
                rhs = self.l2lam * a.adjoint(z - u) + r
                fun = lambda xx: self.l2lam * a.normal(xx) + xx  # noqa: E731
                x, n_cg = zconjgrad(x, rhs, fun, max_iter=self.cg_max_iter, eps=self.cg_eps)
                self.num_cg.append(n_cg)
                ax_plus_u = a(x) + u
                z_old = z
                z = y + l2ball_proj_batch(ax_plus_u - y, self.eps)
                u = ax_plus_u - z
                with torch.no_grad():  # DeepInPy's ADMM convergence check
                    ax = a(x)
                    r_norm = torch.real(zdot_single_batch((ax - z).contiguous())).sqrt()
                    s_norm = torch.real(zdot_single_batch((self.l2lam * a.adjoint(z - z_old)).contiguous())).sqrt()
                    if (r_norm + s_norm).max() < 1e-2:
                        break
        return x


def loss_fun(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """recons/recon.py `_loss_fun`: mean over the batch of sum |pred - gt|^2."""
    resid = pred - gt
    return torch.mean(torch.real(zdot_single_batch(resid)))


# -- data ---------------------------------------------------------------------------------------


def checkerboard(shape: tuple[int, int]) -> torch.Tensor:
    i = torch.arange(shape[0]).view(-1, 1)
    j = torch.arange(shape[1]).view(1, -1)
    return 1.0 - 2.0 * ((i + j) % 2).float()


def uncentred(ksp: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mrirecon's centred k-space (B, C, X, Y) and mask (B, X, Y) in DeepInPy's uncentred
    convention (even X, Y): fft2c(c) = fftshift(s * fft2(c)) with s the checkerboard, so
    fft2(c) = s * ifftshift(fft2c(c)). Both operators then see the same coil images."""
    sign = checkerboard(tuple(ksp.shape[-2:])).to(ksp.device)
    return sign * torch.fft.ifftshift(ksp, dim=(-2, -1)), torch.fft.ifftshift(mask, dim=(-2, -1))
