"""DICOM decoding: rescale slope/intercept, windowing, MONOCHROME1, 8- and 16-bit."""

import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medprobe.datasets.dicom import read_dicom
from medprobe.datasets.io import open_image


def write_dicom(
    path, pixels, *, photometric="MONOCHROME2", slope=None, intercept=None, window=None
):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def grey(image):
    array = np.asarray(image)
    assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()
    return array[..., 0].astype(int)


RAMP8 = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))  # 0, 16, ..., 240


def test_monochrome2_8bit_full_range(tmp_path):
    out = grey(read_dicom(write_dicom(tmp_path / "a.dcm", RAMP8)))
    assert out[0, 0] == 0 and out[0, -1] == 255
    assert (np.diff(out[0]) > 0).all()


def test_monochrome1_is_inverted(tmp_path):
    m2 = grey(read_dicom(write_dicom(tmp_path / "m2.dcm", RAMP8)))
    m1 = grey(read_dicom(write_dicom(tmp_path / "m1.dcm", RAMP8, photometric="MONOCHROME1")))
    assert (m1 == 255 - m2).all()


def test_16bit_with_rescale_and_window(tmp_path):
    # Stored values 0..4000; slope 1, intercept -1024 gives Hounsfield units -1024..2976.
    stored = np.linspace(0, 4000, 64, dtype=np.uint16).reshape(8, 8)
    hu = stored.astype(float) - 1024
    path = write_dicom(tmp_path / "ct.dcm", stored, slope=1, intercept=-1024, window=(40, 400))
    out = grey(read_dicom(path))
    low, high = 40 - 200, 40 + 200
    expected = np.round(np.clip((hu - low) / (high - low), 0, 1) * 255)
    assert np.array_equal(out, expected.astype(int))
    # A user-given window overrides the file's.
    lung = grey(read_dicom(path, window=(-600, 1500)))
    expected_lung = np.round(np.clip((hu + 600 + 750) / 1500, 0, 1) * 255)
    assert np.array_equal(lung, expected_lung.astype(int))


def test_16bit_without_window_uses_the_full_range(tmp_path):
    stored = np.array([[0, 1000], [2000, 3000]], dtype=np.uint16)
    out = grey(read_dicom(write_dicom(tmp_path / "x.dcm", stored, slope=2, intercept=-100)))
    assert out.tolist() == [[0, 85], [170, 255]]


def test_dicom_without_extension_is_detected(tmp_path):
    path = write_dicom(tmp_path / "IM0001", RAMP8)
    assert open_image(path).size == (16, 4)


def test_unreadable_dicom(tmp_path):
    from medprobe.errors import BadImageError

    path = tmp_path / "broken.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    with pytest.raises(BadImageError, match="DICOM"):
        open_image(path)
