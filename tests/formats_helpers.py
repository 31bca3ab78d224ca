"""Builders of small raw files in each field format (ISMRMRD, fastMRI, BART cfl) for the tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from mrirecon.data.transforms import fft2c_numpy


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


def centred_fftn(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"), axes=axes)


def centred_ifftn(k: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(k, axes=axes), axes=axes, norm="ortho"), axes=axes)


def write_ismrmrd(path: Path, ksp: np.ndarray, recon_x: int | None = None, patient: str | None = "P1",
                  trajectory: str = "cartesian", bulk: bool = True) -> Path:
    """An ISMRMRD file of a 3D Cartesian acquisition, ksp (coils, x, ky, kz), one readout per
    (ky, kz) after a noise readout, made with the ismrmrd package (XML header, Acquisition
    objects and the package's HDF5 row type); recon_x < x declares readout oversampling.
    bulk=False appends each readout with Dataset.append_acquisition (the package's own writer,
    slow: about 4 ms a readout); bulk=True writes the same rows in one h5py call."""
    import ismrmrd
    import ismrmrd.xsd as xsd

    c, ex, ey, ez = ksp.shape
    size = lambda x, y, z: xsd.matrixSizeType(x=x, y=y, z=z)  # noqa: E731
    fov = xsd.fieldOfViewMm(x=160.0, y=160.0, z=120.0)
    header = xsd.ismrmrdHeader(
        subjectInformation=xsd.subjectInformationType(patientID=patient) if patient else None,
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=127_000_000),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(receiverChannels=c),
        encoding=[xsd.encodingType(
            trajectory=xsd.trajectoryType(trajectory),
            encodedSpace=xsd.encodingSpaceType(matrixSize=size(ex, ey, ez), fieldOfView_mm=fov),
            reconSpace=xsd.encodingSpaceType(matrixSize=size(recon_x or ex, ey, ez), fieldOfView_mm=fov),
            encodingLimits=xsd.encodingLimitsType(
                kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=ey - 1, center=ey // 2),
                kspace_encoding_step_2=xsd.limitType(minimum=0, maximum=ez - 1, center=ez // 2)),
        )],
    )
    dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dset.write_xml_header(xsd.ToXML(header, "utf-8"))
    noise = ismrmrd.Acquisition(data=np.ones((c, ex), np.complex64))  # a noise readout: must be skipped
    noise.setFlag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    acqs = [noise]
    for kz in range(ez):
        for ky in range(ey):
            acq = ismrmrd.Acquisition(data=np.ascontiguousarray(ksp[:, :, ky, kz]))
            acq.idx.kspace_encode_step_1 = ky
            acq.idx.kspace_encode_step_2 = kz
            acq.center_sample = ex // 2
            acqs.append(acq)
    if not bulk:
        for acq in acqs:
            dset.append_acquisition(acq)
        dset.close()
        return path
    dset.close()
    from ismrmrd.hdf5 import acquisition_dtype, acquisition_header_dtype

    rows = np.empty(len(acqs), dtype=acquisition_dtype)
    for j, acq in enumerate(acqs):
        rows[j]["head"] = np.frombuffer(acq.getHead(), dtype=acquisition_header_dtype)[0]
        rows[j]["data"] = acq.data.view(np.float32).reshape(-1)
        rows[j]["traj"] = np.zeros(0, np.float32)
    with h5py.File(path, "a") as f:
        f["dataset"].create_dataset("data", data=rows, maxshape=(None,))
    return path
