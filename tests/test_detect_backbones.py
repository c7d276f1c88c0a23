"""Backbones: the offline EfficientNet-Lite0 is a real ImageNet classifier; torchvision weights come
from the torch hub cache, and their absence is a clear error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from detect.detectors.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FeatureExtractor,
    efficientnet_lite0,
    load_torchvision_state_dict,
    torchvision_weights,
)
from detect.errors import BackboneWeightsMissingError

CAT_CLASSES = {281, 282, 283, 284, 285}  # ImageNet tabby, tiger cat, Persian, Siamese, Egyptian cat


def _imagenet_batch(image: np.ndarray) -> torch.Tensor:
    x = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = torch.from_numpy(x).permute(2, 0, 1)[None]
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_efficientnet_lite0_weights_load_strictly_and_classify_a_cat():
    model = efficientnet_lite0()  # strict=True: every key of the shipped state dict matched
    with torch.no_grad():
        probs = model(_imagenet_batch(skimage.data.chelsea())).softmax(1)[0]
    top = int(probs.argmax())
    assert top in CAT_CLASSES
    assert float(probs[sorted(CAT_CLASSES)].sum()) > 0.7


def test_feature_extractor_gives_stride_8_and_16_maps_for_gray_and_rgb():
    extractor = FeatureExtractor("efficientnet_lite0")
    with torch.no_grad():
        rgb = extractor(torch.rand(2, 3, 96, 128))
        gray = extractor(torch.rand(1, 1, 96, 128))
    assert [tuple(f.shape) for f in rgb] == [(2, 40, 12, 16), (2, 112, 6, 8)]
    assert [tuple(f.shape[1:]) for f in gray] == [(40, 12, 16), (112, 6, 8)]


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


def test_torchvision_backbone_loads_weights_from_the_hub_cache(torch_home):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    filename = torchvision_weights("resnet18").url.rsplit("/", 1)[-1]
    target = torch_home / "hub" / "checkpoints" / filename
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)

    extractor = FeatureExtractor("resnet18", allow_download=False)
    assert torch.equal(extractor.body.layer2[0].conv1.weight, reference.layer2[0].conv1.weight)
    with torch.no_grad():
        f8, f16 = extractor(torch.rand(1, 3, 64, 64))
    assert f8.shape == (1, 128, 8, 8) and f16.shape == (1, 256, 4, 4)


def test_missing_torchvision_weights_name_the_file_and_where_to_put_it(torch_home):
    filename = torchvision_weights("wide_resnet50_2").url.rsplit("/", 1)[-1]
    with pytest.raises(BackboneWeightsMissingError) as info:
        load_torchvision_state_dict("wide_resnet50_2", allow_download=False)
    message = str(info.value)
    assert filename in message
    assert str(torch_home / "hub" / "checkpoints" / filename) in message
