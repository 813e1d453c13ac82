"""Every bad or awkward image gives a status, and awkward-but-valid ones decode correctly."""

from __future__ import annotations

import numpy as np
import pytest

from featurestore import SampleStatus
from stages.extraction.images import Preprocess, decode_image
from tests.conftest import write_bad_files

PRE = Preprocess(64, (0.5,) * 3, (0.5,) * 3)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    return root, write_bad_files(root)


@pytest.mark.parametrize(
    "name, status",
    [
        ("truncated", SampleStatus.DECODE_ERROR),
        ("empty", SampleStatus.EMPTY_FILE),
        ("missing", SampleStatus.MISSING_FILE),
        ("text", SampleStatus.NOT_AN_IMAGE),
        ("gray", SampleStatus.OK),
        ("cmyk", SampleStatus.OK),
        ("sixteen", SampleStatus.OK),
        ("huge", SampleStatus.OK),
    ],
)
def test_status_per_kind_of_input(bad, name, status):
    root, files = bad
    out = decode_image(root / files[name], PRE)
    assert out.status == status, out.detail
    if status == SampleStatus.OK:
        assert out.pixels.shape == (64, 64, 3) and out.pixels.dtype == np.uint8
    else:
        assert out.pixels is None and out.detail


def test_grayscale_and_16bit_keep_their_brightness(bad):
    root, files = bad
    gray = decode_image(root / files["gray"], PRE).pixels
    sixteen = decode_image(root / files["sixteen"], PRE).pixels
    assert (gray[..., 0] == gray[..., 2]).all()
    # the 16-bit PNG holds the same picture scaled by 257: it must not come out black or clipped
    assert abs(float(sixteen.mean()) - float(gray.mean())) < 3.0


def test_huge_image_over_the_pixel_limit_is_a_status(bad):
    root, files = bad
    out = decode_image(root / files["huge"], PRE, max_pixels=50_000_000)
    assert out.status == SampleStatus.TOO_LARGE and "12000x9000" in out.detail


def test_crop_outside_the_image_is_a_status(bad):
    root, _ = bad
    out = decode_image(root / "bad" / "whole.jpg", PRE, crop=(5000, 5000, 10, 10))
    assert out.status == SampleStatus.BAD_CROP
    inside = decode_image(root / "bad" / "whole.jpg", PRE, crop=(100, 50, 200, 220))
    assert inside.status == SampleStatus.OK
