"""Built-in models (linear, MLP, small CNN, small U-Net) and 'module:function' plugins."""

from __future__ import annotations

import logging
import reprlib

import torch
from torch import nn

from gammatune.config import ModelConfig
from gammatune.errors import ConfigError
from gammatune.plugins import call_ref, describe

logger = logging.getLogger(__name__)


def build_model(
    config: ModelConfig,
    *,
    n_features: int,
    n_outputs: int,
    image_shape: tuple[int, int, int] | None = None,
) -> nn.Module:
    """Build the configured model for inputs ``(N, n_features)`` and outputs ``(N, n_outputs)``.

    A plugin ``'module:function'`` is called as ``function(n_features=..., n_outputs=...)`` and
    must return an ``nn.Module`` mapping ``(N, n_features)`` to ``(N, n_outputs)`` logits;
    that is checked here, on a batch of zeros, before any training step.

    Raises:
        ConfigError: The cnn without an image shape, or a plugin that cannot be imported or
            built (it raised, or takes other arguments), or whose model fails on a batch or
            returns logits of another shape (``n_outputs`` a sample: 1 for a binary task).
    """
    match config.kind:
        case "linear":
            return nn.Linear(n_features, n_outputs)
        case "mlp":
            return _mlp(n_features, config.hidden, n_outputs, config.dropout)
        case "cnn":
            if image_shape is None:
                raise ConfigError(
                    "model.kind: 'cnn' needs images; set data.image_shape to "
                    "[channels, height, width] (the features are reshaped to it)."
                )
            return _cnn(image_shape, config.channels, n_outputs, config.dropout)
        case "unet":
            raise ConfigError(
                "model.kind: 'unet' segments images (masks as labels) and trains through its "
                "own trial (gammatune.segment); it does not classify feature rows."
            )
    model = call_ref(
        config.kind,
        field="model.kind",
        error=ConfigError,
        n_features=n_features,
        n_outputs=n_outputs,
    )
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model.kind: {config.kind} must return a torch.nn.Module; got {reprlib.repr(model)}."
        )
    check_outputs(model, config.kind, n_features=n_features, n_outputs=n_outputs)
    return model


PROBE_ROWS = 3  # a batch size no model has a reason to special-case (1 squeezes, 2 halves)


def check_outputs(model: nn.Module, kind: str, *, n_features: int, n_outputs: int) -> None:
    """Run ``model`` on a batch of zeros ``(PROBE_ROWS, n_features)`` (eval mode, no gradient,
    where its parameters are) and refuse what would train wrong: logits of another shape than
    ``(PROBE_ROWS, n_outputs)`` (7 outputs for a binary task would be scored as 7 classes).

    Raises:
        ConfigError: The forward raised, or returned something else than float logits of that
            shape; one line naming ``model.kind``, the shapes and what the task needs.
    """
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    batch = torch.zeros(PROBE_ROWS, n_features, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(batch)
    except Exception as exc:  # noqa: BLE001 - the user's forward: one line, whatever it raised
        raise ConfigError(
            f"model.kind: {kind} fails on a batch of shape {tuple(batch.shape)} (samples, "
            f"features): {describe(exc)}."
        ) from None
    finally:
        model.train(was_training)
    wanted = (PROBE_ROWS, n_outputs)
    task = (
        "one logit a sample: the task is binary"
        if n_outputs == 1
        else f"one logit a class: {n_outputs} classes"
    )
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        got = type(logits).__name__ if not isinstance(logits, torch.Tensor) else logits.dtype
        raise ConfigError(
            f"model.kind: {kind} must return a float tensor of logits {wanted} for a batch of "
            f"{PROBE_ROWS} samples ({task}); got {got}."
        )
    if tuple(logits.shape) != wanted:
        raise ConfigError(
            f"model.kind: {kind} returns logits of shape {tuple(logits.shape)} for a batch of "
            f"{PROBE_ROWS} samples; the task needs {wanted} ({task})."
        )


def _mlp(n_features: int, hidden: list[int], n_outputs: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_features
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    return nn.Sequential(*layers, nn.Linear(width, n_outputs))


def _cnn(
    image_shape: tuple[int, int, int], channels: list[int], n_outputs: int, dropout: float
) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Unflatten(1, image_shape)]
    in_channels, height, width = image_shape
    for out_channels in channels:
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU()]
        if min(height, width) >= 2:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        in_channels = out_channels
    layers += [
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(in_channels * height * width, n_outputs),
    ]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """A small U-Net (Ronneberger et al. 2015): per level two 3x3 convolutions with batch norm
    and ReLU; max-pooling down, a transposed convolution up, the level's features concatenated
    (the skip); a 1x1 convolution to the logits. Any image size: the input is padded to a
    multiple of ``2 ** (levels - 1)`` and the logits cropped back.

    Args:
        in_channels: The images' channels.
        channels: Channels of each level, e.g. ``[16, 32]`` (two levels: one halving).
        n_outputs: Logits per pixel: 1 (binary, sigmoid) or the number of classes (softmax).

    Shapes: ``(N, in_channels, H, W)`` -> ``(N, n_outputs, H, W)``.
    """

    def __init__(self, in_channels: int, channels: list[int], n_outputs: int) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        self.down = nn.ModuleList(
            _double_conv(a, b) for a, b in zip(widths, channels, strict=False)
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(b, a, 2, stride=2)
            for a, b in zip(channels, channels[1:], strict=False)
        )
        self.merge = nn.ModuleList(_double_conv(2 * a, a) for a in channels[:-1])
        self.head = nn.Conv2d(channels[0], n_outputs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        step = 2 ** (len(self.down) - 1)
        x = nn.functional.pad(x, (0, -width % step, 0, -height % step))
        skips = []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        for level in reversed(range(len(self.up))):
            x = self.merge[level](torch.cat([skips[level], self.up[level](x)], dim=1))
        return self.head(x)[..., :height, :width]


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def init_output_bias(model: nn.Module, class_prior: torch.Tensor) -> bool:
    """Set the last linear layer's bias to the class prior (Lin et al. 2017, section 4.1).

    Binary (one output): ``-log((1 - pi) / pi)``; multiclass: ``log(pi_c)``. Training then does
    not spend its first steps learning the prior. Returns False (and changes nothing) when the
    model has no final ``nn.Linear`` with a bias of the right size.
    """
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    prior = class_prior.double().clamp(1e-6, 1 - 1e-6)
    target = torch.log(prior / (1 - prior))[1:] if len(prior) == 2 else torch.log(prior)
    if not last or last[-1].bias is None or last[-1].bias.shape != target.shape:
        logger.info(
            "model has no final linear layer of %d outputs: bias not initialized", len(target)
        )
        return False
    with torch.no_grad():
        last[-1].bias.copy_(target.to(last[-1].bias.dtype))
    return True
