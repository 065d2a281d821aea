"""Built-in models, bias initialization and plugins."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gammatune.config import ModelConfig
from gammatune.errors import ConfigError
from gammatune.models import build_model, init_output_bias


@pytest.mark.parametrize("kind", ["linear", "mlp", "cnn"])
@pytest.mark.parametrize("n_outputs", [1, 10])
def test_builtin_shapes(kind: str, n_outputs: int) -> None:
    model = build_model(
        ModelConfig(kind=kind), n_features=64, n_outputs=n_outputs, image_shape=(1, 8, 8)
    )
    assert model(torch.randn(5, 64)).shape == (5, n_outputs)


def test_cnn_needs_an_image_shape() -> None:
    with pytest.raises(ConfigError, match="model.kind: 'cnn' needs images; set data.image_shape"):
        build_model(ModelConfig(kind="cnn"), n_features=64, n_outputs=1)


def test_output_bias_is_the_class_prior() -> None:
    model = build_model(ModelConfig(kind="mlp", hidden=[8]), n_features=4, n_outputs=1)
    assert init_output_bias(model, torch.tensor([0.99, 0.01]))
    torch.nn.init.zeros_(model[-1].weight)  # the output is then the bias alone
    assert torch.sigmoid(model(torch.randn(3, 4))).flatten().tolist() == pytest.approx([0.01] * 3)
    multi = build_model(ModelConfig(kind="linear"), n_features=4, n_outputs=3)
    prior = torch.tensor([0.7, 0.2, 0.1])
    assert init_output_bias(multi, prior)
    torch.nn.init.zeros_(multi.weight)
    assert torch.softmax(multi(torch.randn(1, 4)), 1).flatten().tolist() == pytest.approx(
        prior.tolist()
    )


def test_plugin_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_models.py").write_text(
        "import torch\n"
        "def build(n_features, n_outputs):\n"
        "    return torch.nn.Sequential(\n"
        "        torch.nn.Linear(n_features, 3), torch.nn.Linear(3, n_outputs)\n"
        "    )\n"
        "def not_a_model(n_features, n_outputs):\n"
        "    return 'x'\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    model = build_model(ModelConfig(kind="my_models:build"), n_features=4, n_outputs=1)
    assert model(torch.randn(2, 4)).shape == (2, 1)
    with pytest.raises(ConfigError, match="must return a torch.nn.Module; got 'x'"):
        build_model(ModelConfig(kind="my_models:not_a_model"), n_features=4, n_outputs=1)
