"""pythae's saved VAEs (``model.save(folder)``: ``model_config.json`` and ``model.pt``) as logpx checkpoints,
for its default MLP networks and its MNIST convolutional benchmark networks (``Encoder_Conv_VAE_MNIST`` /
``Decoder_Conv_AE_MNIST``), described as a ``layered_vae``.

``model.pt`` is read with ``torch.load(weights_only=True)`` (tensors and containers only). A model with its
own networks also has ``encoder.pkl`` / ``decoder.pkl``: cloudpickled code, which logpx never loads; such a
folder converts when its networks are one of the architectures here, named with ``--pythae-arch``.

pythae's decoders end in a sigmoid. With ``reconstruction_loss: bce`` that is Bernoulli on its logits, so the
sigmoid is dropped and the logits are the decoder's output; with ``mse`` it is a Gaussian of unit variance
around the sigmoid's output (pythae's loss is half the squared error), so the sigmoid stays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError
from .convert import convert_state

__all__ = ["PYTHAE_ARCHITECTURES", "convert_pythae"]

# The VAE-type configurations whose encoder gives (embedding, log_covariance) and whose decoder gives the
# reconstruction: one Gaussian latent layer, as layered_vae describes.
VAE_CONFIGS = (
    "VAEConfig",
    "BetaVAEConfig",
    "IWAEConfig",
    "MIWAEConfig",
    "CIWAEConfig",
    "PIWAEConfig",
    "DisentangledBetaVAEConfig",
)
MAX_CONFIG_BYTES = 1 << 16


def _mlp(latent: int, input_dim: int) -> tuple[list[Any], list[Any], dict[str, str]]:
    """pythae's default networks: ``Encoder_VAE_MLP`` (784-512, ReLU) and ``Decoder_AE_MLP`` (latent-512, ReLU, 784)."""
    encoder = ["flatten", {"type": "linear", "out": 512}, "relu"]
    decoder = [{"type": "linear", "out": 512}, "relu", {"type": "linear", "out": input_dim}]
    names = {"encoder.1": "encoder.layers.0.0", "decoder.0": "decoder.layers.0.0", "decoder.2": "decoder.layers.1.0"}
    return encoder, decoder, names


def _conv_mnist(latent: int, input_dim: int) -> tuple[list[Any], list[Any], dict[str, str]]:
    """``Encoder_Conv_VAE_MNIST``: four stride-2 4x4 convolutions (128 to 1024 channels), each with batch norm
    and ReLU; ``Decoder_Conv_AE_MNIST``: Linear to 1024 x 4 x 4, three stride-2 3x3 transposed convolutions."""
    encoder: list[Any] = []
    names: dict[str, str] = {}
    for i, channels in enumerate((128, 256, 512, 1024)):
        encoder += [
            {"type": "conv2d", "out": channels, "kernel": 4, "stride": 2, "padding": 1},
            {"type": "batchnorm"},
            "relu",
        ]
        names |= {f"encoder.{3 * i}": f"encoder.layers.{i}.0", f"encoder.{3 * i + 1}": f"encoder.layers.{i}.1"}
    encoder.append("flatten")
    decoder: list[Any] = [{"type": "linear", "out": 1024 * 4 * 4}, {"type": "unflatten", "shape": [1024, 4, 4]}]
    names["decoder.0"] = "decoder.layers.0"
    for i, (channels, output_padding) in enumerate(((512, 0), (256, 1), (1, 1)), start=1):
        convt = {"type": "conv_transpose2d", "out": channels, "kernel": 3, "stride": 2, "padding": 1}
        names[f"decoder.{len(decoder)}"] = f"decoder.layers.{i}.0"
        decoder.append({**convt, "output_padding": output_padding})
        if channels != 1:
            names[f"decoder.{len(decoder)}"] = f"decoder.layers.{i}.1"
            decoder += [{"type": "batchnorm"}, "relu"]
    return encoder, decoder, names


PYTHAE_ARCHITECTURES = {"mlp": _mlp, "conv-mnist": _conv_mnist}


def _expand(names: dict[str, str], state: dict[str, torch.Tensor]) -> dict[str, str]:
    """Module names to every tensor name under them (weight, bias, running statistics), as the state has them."""
    out = {}
    for mine, theirs in names.items():
        for key in state:
            if key.startswith(theirs + "."):
                out[mine + key[len(theirs) :]] = key
    return out


def convert_pythae(
    folder: Path, out: Path, architecture: str | None = None, dataset: str | None = None
) -> dict[str, Any]:
    """Write ``out`` from a pythae model folder; ``architecture`` names its networks (``PYTHAE_ARCHITECTURES``)
    when they are not pythae's defaults."""
    config_path, weights_path = folder / "model_config.json", folder / "model.pt"
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{folder}: not a pythae model folder (it needs model_config.json and model.pt)")
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{config_path.name}: over {MAX_CONFIG_BYTES} bytes; not a pythae configuration")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{config_path.name}: not readable JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("name") not in VAE_CONFIGS:
        raise CheckpointError(
            f"{config_path.name}: a {config.get('name') if isinstance(config, dict) else type(config).__name__} "
            f"model; logpx reads pythae's one-latent-layer VAEs ({', '.join(VAE_CONFIGS)})"
        )
    input_shape, latent = config.get("input_dim"), config.get("latent_dim")
    if not isinstance(input_shape, list) or not isinstance(latent, int):
        raise CheckpointError(f"{config_path.name}: input_dim (a list) and latent_dim (an integer) are needed")
    default = config.get("uses_default_encoder", True) and config.get("uses_default_decoder", True)
    name = architecture or ("mlp" if default else None)
    if name not in PYTHAE_ARCHITECTURES:
        raise CheckpointError(
            f"{folder.name}: its networks are its own (encoder.pkl and decoder.pkl hold their code, which logpx never "
            f"loads): name them with --pythae-arch ({', '.join(PYTHAE_ARCHITECTURES)}), or describe them as a "
            "layered_vae and convert with --arch and --names (docs/checkpoints.md)"
        )
    loss = config.get("reconstruction_loss", "mse")
    if loss not in ("bce", "mse"):
        raise CheckpointError(f"{config_path.name}: reconstruction_loss {loss!r}; logpx reads 'bce' and 'mse'")
    size = 1
    for dim in input_shape:
        size *= int(dim)
    encoder, decoder, modules = PYTHAE_ARCHITECTURES[name](latent, size)
    if loss == "mse":
        decoder = [*decoder, "sigmoid"]
    try:
        saved = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # refused pickles, truncated files: one line, never a suggestion to load code
        raise CheckpointError(f"{weights_path.name}: not a readable tensors-only file ({type(exc).__name__})") from None
    state = saved.get("model_state_dict") if isinstance(saved, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{weights_path.name}: expected pythae's {{'model_state_dict': ...}} of tensors")
    names = _expand(modules | {"mu": "encoder.embedding", "scale": "encoder.log_var"}, state)
    spec = {
        "family": "layered_vae",
        "input_shape": input_shape,
        "arch": {
            "latent": latent,
            "encoder": encoder,
            "decoder": decoder,
            "scale": "log_var",
            "likelihood": "bernoulli" if loss == "bce" else "gaussian",
            "log_sigma_x": 0.0,
        },
    }
    return convert_state(state, f"{folder.name}/model.pt", names, spec, out, {"name": dataset} if dataset else None)
