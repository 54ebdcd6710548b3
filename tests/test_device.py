"""seqtag.device: device names and the precisions a device can run."""

import pytest
import torch

from seqtag import SeqtagError, resolve_device


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_requested_without_cuda_is_an_error(spec):
    with pytest.raises(SeqtagError, match="CUDA is not available"):
        resolve_device(spec)


def test_device_auto_and_bad_names():
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    with pytest.raises(SeqtagError, match="unknown device"):
        resolve_device("gpu")
