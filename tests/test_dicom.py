"""DICOM decoding: rescale slope/intercept, windowing, MONOCHROME1, 8- and 16-bit."""

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medprobe.datasets.dicom import read_dicom
from medprobe.datasets.io import open_image


def write_dicom(
    path,
    pixels,
    *,
    photometric="MONOCHROME2",
    slope=None,
    intercept=None,
    window=None,
    function=None,
    lut=None,
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
    if function is not None:
        ds.VOILUTFunction = function
    if lut is not None:  # (first stored value, table): a VOI LUT Sequence of 16-bit entries
        item = Dataset()
        item.LUTDescriptor = [len(lut[1]), lut[0], 16]
        item.LUTData = np.asarray(lut[1], dtype="<u2").tobytes()
        ds.VOILUTSequence = Sequence([item])
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
    # the standard's LINEAR window (PS3.3 C.11.2.1.2.1): centre - 0.5, width - 1
    centre, width = 40 - 0.5, 400 - 1
    expected = np.round(np.clip((hu - centre) / width + 0.5, 0, 1) * 255)
    assert np.abs(out - expected).max() <= 1
    # A user-given window overrides the file's.
    lung = grey(read_dicom(path, window=(-600, 1500)))
    expected_lung = np.round(np.clip((hu + 600.5) / 1499 + 0.5, 0, 1) * 255)
    assert np.abs(lung - expected_lung).max() <= 1


def _pydicom_reference(path):
    """pydicom's own modality + VOI pipeline, scaled from its output range to 0..255."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    from medprobe.datasets.dicom import _voi_output_range

    ds = pydicom.dcmread(str(path))
    shown = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(float)
    low, high = _voi_output_range(ds)
    return np.round(np.clip((shown - low) / (high - low), 0, 1) * 255).astype(int)


@pytest.mark.parametrize(
    "kind",
    [
        {"window": (40, 400)},
        {"window": (40, 400), "function": "LINEAR_EXACT"},
        {"window": (300, 800), "function": "SIGMOID"},
        {"lut": (0, np.linspace(0, 65535, 4001) ** 0.5 * 255)},  # a non-linear VOI LUT
    ],
    ids=["linear", "linear-exact", "sigmoid", "voi-lut-sequence"],
)
def test_voi_transforms_equal_pydicoms(tmp_path, kind):
    stored = np.linspace(0, 4000, 64, dtype=np.uint16).reshape(8, 8)
    rescale = {} if "lut" in kind else {"slope": 1, "intercept": -1024}  # the LUT reads 0..4000
    path = write_dicom(tmp_path / "x.dcm", stored, **rescale, **kind)
    out = grey(read_dicom(path))
    assert np.array_equal(out, _pydicom_reference(path))
    assert out.min() < 60 and out.max() > 190  # the transform spread the values (not flat)
    if "function" in kind and kind["function"] == "SIGMOID":
        linear = grey(
            read_dicom(
                write_dicom(
                    tmp_path / "l.dcm", stored, slope=1, intercept=-1024, window=kind["window"]
                )
            )
        )
        assert np.abs(linear - out).max() > 10  # SIGMOID is not LINEAR


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
