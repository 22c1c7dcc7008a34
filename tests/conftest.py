import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory):
    from ouroboros.testing import tiny_backbone

    return tiny_backbone(tmp_path_factory.mktemp("llama"), "llama", layers=5)


@pytest.fixture(scope="session")
def qwen2_dir(tmp_path_factory):
    from ouroboros.testing import tiny_backbone

    return tiny_backbone(tmp_path_factory.mktemp("qwen2"), "qwen2", layers=5)


@pytest.fixture(params=["llama", "qwen2"])
def backbone_dir(request, llama_dir, qwen2_dir):
    return {"llama": llama_dir, "qwen2": qwen2_dir}[request.param]


@pytest.fixture
def ids():
    return torch.randint(3, 97, (2, 11), generator=torch.Generator().manual_seed(0))
