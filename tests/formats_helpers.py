"""Builders of small raw files in each field format (ISMRMRD, fastMRI, BART cfl) for the tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np


def phantom_coils(coils: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth complex coil images (coils, *shape) complex64: a few Gaussian blobs times smooth
    coil sensitivities, with noise, so that ESPIRiT has something to estimate."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    obj = np.zeros(shape)
    for _ in range(4):
        c = rng.uniform(-0.4, 0.4, len(shape))
        w = rng.uniform(0.2, 0.5)
        obj += np.exp(-sum((g - ci) ** 2 for g, ci in zip(grids, c)) / w**2)
    obj = obj * np.exp(1j * 0.7 * grids[0])
    out = []
    for k in range(coils):
        angle = 2 * np.pi * k / coils
        centre = 1.2 * np.array([np.cos(angle), np.sin(angle)] + [0.0] * (len(shape) - 2))
        sens = np.exp(-sum((g - ci) ** 2 for g, ci in zip(grids, centre)) / 2.0) * np.exp(1j * angle)
        out.append(obj * sens)
    noise = 0.01 * (rng.standard_normal((coils, *shape)) + 1j * rng.standard_normal((coils, *shape)))
    return (np.stack(out) + noise).astype(np.complex64)


def oversampled_coils(n: int, coils: int = 8, shape: tuple[int, int] = (32, 48), seed: int = 20) -> np.ndarray:
    """(n, coils, 2 * X, Y) complex64 coil images: phantom_coils of X readout rows placed in the
    central half of a 2x oversampled readout (empty edges, as a scanner's oversampling leaves
    them), so that removing the oversampling is exact."""
    x, y = shape
    out = np.zeros((n, coils, 2 * x, y), np.complex64)
    out[:, :, x // 2 : x // 2 + x] = np.stack([phantom_coils(coils, shape, seed=seed + i) for i in range(n)])
    return out


def centred_fftn(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"), axes=axes)


def centred_ifftn(k: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(k, axes=axes), axes=axes, norm="ortho"), axes=axes)


def write_ismrmrd(
    path: Path,
    ksp: np.ndarray,
    recon_x: int | None = None,
    patient: str | None = "P1",
    trajectory: str = "cartesian",
    bulk: bool = True,
) -> Path:
    """An ISMRMRD file of a 3D Cartesian acquisition, ksp (coils, x, ky, kz), one readout per
    (ky, kz) (see write_ismrmrd_lines); recon_x < x declares readout oversampling."""
    c, ex, ey, ez = ksp.shape
    return write_ismrmrd_lines(
        path, (ex, ey, ez), lambda ky, kz: ksp[:, :, ky, kz], c, recon_x, patient, trajectory, bulk
    )


def write_ismrmrd_lines(
    path: Path,
    shape: tuple[int, int, int],
    line: Callable[[int, int], np.ndarray],
    coils: int = 8,
    recon_x: int | None = None,
    patient: str | None = "P1",
    trajectory: str = "cartesian",
    bulk: bool = True,
) -> Path:
    """An ISMRMRD 3D Cartesian file of encoded matrix shape (x, ky, kz): a noise readout, then
    one readout `line(ky, kz)` (coils, x) per phase encode, ky fastest. Made with the ismrmrd
    package (XML header, Acquisition objects, the package's HDF5 row type); bulk=False appends
    each readout with Dataset.append_acquisition (the package's own writer, about 4 ms a
    readout), bulk=True writes the same rows in blocks with h5py (memory: one block)."""
    import ismrmrd

    ex, ey, ez = shape
    header = ismrmrd_header(shape, (recon_x or ex, ey, ez), coils, patient=patient, trajectory=trajectory)
    noise = ismrmrd.Acquisition(data=np.ones((coils, ex), np.complex64))  # a noise readout: must be skipped
    noise.setFlag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)

    def acquisitions():
        yield noise
        for kz in range(ez):
            for ky in range(ey):
                acq = ismrmrd.Acquisition(data=np.ascontiguousarray(line(ky, kz), dtype=np.complex64))
                acq.idx.kspace_encode_step_1 = ky
                acq.idx.kspace_encode_step_2 = kz
                acq.center_sample = ex // 2
                yield acq

    return write_acquisitions(path, header, acquisitions(), bulk)


def ismrmrd_header(
    encoded: tuple[int, int, int],
    recon: tuple[int, int, int],
    coils: int,
    patient: str | None = "P1",
    trajectory: str = "cartesian",
    centre: tuple[int, int] | None = None,
    limits: tuple[int, int] | None = None,
    slices: int = 1,
):
    """An ISMRMRD XML header (the ismrmrd package's xsd types): encoded and recon matrix sizes,
    encoding limits (ky, kz maxima `limits` and centres `centre`; default the matrix and its
    middle), the slice limit, the patient ID."""
    import ismrmrd.xsd as xsd

    _, ey, ez = encoded
    maxima = limits or (ey - 1, ez - 1)
    centre = centre or (ey // 2, ez // 2)
    size = lambda x, y, z: xsd.matrixSizeType(x=x, y=y, z=z)  # noqa: E731
    fov = xsd.fieldOfViewMm(x=160.0, y=160.0, z=120.0)
    return xsd.ismrmrdHeader(
        subjectInformation=xsd.subjectInformationType(patientID=patient) if patient else None,
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=127_000_000),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(receiverChannels=coils),
        encoding=[
            xsd.encodingType(
                trajectory=xsd.trajectoryType(trajectory),
                encodedSpace=xsd.encodingSpaceType(matrixSize=size(*encoded), fieldOfView_mm=fov),
                reconSpace=xsd.encodingSpaceType(matrixSize=size(*recon), fieldOfView_mm=fov),
                encodingLimits=xsd.encodingLimitsType(
                    kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=maxima[0], center=centre[0]),
                    kspace_encoding_step_2=xsd.limitType(minimum=0, maximum=maxima[1], center=centre[1]),
                    slice=xsd.limitType(minimum=0, maximum=slices - 1, center=0),
                ),
            )
        ],
    )


def write_acquisitions(path: Path, header, acquisitions, bulk: bool = True) -> Path:
    """Write an ISMRMRD file: the XML header and the ismrmrd.Acquisition objects, appended one by
    one with the package's writer (bulk=False) or as the package's HDF5 rows in blocks (h5py)."""
    import ismrmrd
    import ismrmrd.xsd as xsd
    from ismrmrd.hdf5 import acquisition_dtype, acquisition_header_dtype

    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dset.write_xml_header(xsd.ToXML(header, "utf-8"))
    if not bulk:
        for acq in acquisitions:
            dset.append_acquisition(acq)
        dset.close()
        return path
    dset.close()
    with h5py.File(path, "a") as f:
        ds = f["dataset"].create_dataset("data", shape=(0,), maxshape=(None,), dtype=acquisition_dtype, chunks=(1024,))
        block: list = []

        def flush() -> None:
            rows = np.empty(len(block), dtype=acquisition_dtype)
            for j, acq in enumerate(block):
                rows[j]["head"] = np.frombuffer(acq.getHead(), dtype=acquisition_header_dtype)[0]
                rows[j]["data"] = acq.data.view(np.float32).reshape(-1)
                rows[j]["traj"] = np.zeros(0, np.float32)
            n = ds.shape[0]
            ds.resize((n + len(rows),))
            ds[n:] = rows
            block.clear()

        for acq in acquisitions:
            block.append(acq)
            if len(block) == 4096:
                flush()
        if block:
            flush()
    return path


def fastmri_header(enc: tuple[int, int], recon: tuple[int, int], padding: tuple[int, int] | None = None) -> bytes:
    """A minimal fastMRI-style ISMRMRD XML header (encodedSpace, reconSpace and, with `padding`
    (left, right): the acquired columns [left, right), encodingLimits/kspace_encoding_step_1 as
    fastMRI's files state them: center = enc_y // 2 - left, maximum = right - left - 1)."""

    def space(name: str, x: int, y: int) -> str:
        return (
            f"<{name}><matrixSize><x>{x}</x><y>{y}</y><z>1</z></matrixSize>"
            f"<fieldOfView_mm><x>280</x><y>140</y><z>4.5</z></fieldOfView_mm></{name}>"
        )

    limits = ""
    if padding is not None:
        left, right = padding
        limits = (
            "<encodingLimits><kspace_encoding_step_1><minimum>0</minimum>"
            f"<maximum>{right - left - 1}</maximum><center>{enc[1] // 2 - left}</center>"
            "</kspace_encoding_step_1></encodingLimits>"
        )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        f"<encoding>{space('encodedSpace', *enc)}{space('reconSpace', *recon)}{limits}"
        f"<trajectory>cartesian</trajectory></encoding></ismrmrdHeader>"
    ).encode()


def write_fastmri(
    path: Path,
    coils: Sequence[np.ndarray],
    recon: tuple[int, int],
    rss: bool = True,
    padding: tuple[int, int] | None = None,
    patient: str = "abc123",
    noise: float = 0.0,
) -> np.ndarray | None:
    """fastMRI's multi-coil layout from coil images, one (C, H, W) per slice: `kspace`
    (N, C, H, W) complex64 (their fft2c plus complex Gaussian noise of E|n|^2 = noise^2 per
    sample, zero outside the acquired columns [left, right) of `padding`, which the header's
    encodingLimits state), `ismrmrd_header`, `reconstruction_rss` (N, h, w) (as
    fastMRI makes it: root-sum-of-squares of the centre crop of the coil images of `kspace`) and
    attributes, written slice by slice. Returns the k-space when the input is one array (the
    tests), else None."""
    n = len(coils)
    c, h, w = coils[0].shape
    top, left = (h - recon[0]) // 2, (w - recon[1]) // 2
    columns = np.ones(w, np.float32)
    if padding is not None:
        columns[: padding[0]] = columns[padding[1] :] = 0
    out = []
    rng = np.random.default_rng(len(coils))
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("kspace", (n, c, h, w), np.complex64, chunks=(1, c, h, w))
        f["ismrmrd_header"] = fastmri_header((h, w), recon, padding)
        if rss:
            f.create_dataset("reconstruction_rss", (n, *recon), np.float32)
        for i in range(n):
            k = centred_fftn(np.asarray(coils[i]), (-2, -1))
            if noise:
                k = k + noise / np.sqrt(2) * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
            k = (k * columns).astype(np.complex64)
            ds[i] = k
            if rss:
                crop = centred_ifftn(k, (-2, -1))[:, top : top + recon[0], left : left + recon[1]]
                f["reconstruction_rss"][i] = np.sqrt((np.abs(crop) ** 2).sum(0))
            if isinstance(coils, np.ndarray):
                out.append(k)
        f.attrs.update({"acquisition": "CORPD_FBK", "max": 1.0, "norm": 1.0, "patient_id": patient})
    return np.stack(out) if out else None
