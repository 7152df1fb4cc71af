"""The one device resolution used by training, evaluation and inference."""

from __future__ import annotations

import pytest
import torch

from mri_seg.inference import predictor
from mri_seg.training import runtime
from mri_seg.utils.device import resolve_device


def test_training_and_inference_use_the_same_function():
    assert runtime.resolve_device is resolve_device and predictor.resolve_device is resolve_device


def test_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert resolve_device("auto") == expected
    for bad in ("gpu", "cpu:0", "cuda:x", ""):
        with pytest.raises(ValueError, match=f"unknown device '{bad}'"):
            resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_a_one_line_error(name):
    with pytest.raises(ValueError, match=f"device '{name}' requested but CUDA is not available"):
        resolve_device(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_and_local_rank():
    assert resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
