"""The canonical SAE: rows are features.

Weights (the same names and orientation as SAELens):

- ``W_enc`` ``[d_in, F]``, ``b_enc`` ``[F]``: encoder; ``W_dec`` ``[F, d_in]``: one decoder row per feature;
  ``b_dec`` ``[d_in]``: pre-encoder / decoder bias; ``threshold`` ``[F]``: JumpReLU only.

Forward pass (``apply_b_dec_to_input`` true, as in the post and SAELens)::

    pre   = (x - b_dec) @ W_enc + b_enc
    f     = act(pre)            # relu | jumprelu: relu(pre) * (pre > threshold) | topk: relu, keep the k largest
    x_hat = f @ W_dec + b_dec

Our folder format is one folder per SAE: ``cfg.json`` (a :class:`SaeConfig`) + ``sae.safetensors``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import save_file

from featgraph.errors import BadWeightsError, ConfigError, SaeFormatError, ShapeMismatchError
from featgraph.io.files import read_json, write_json_into
from featgraph.io.output import atomic_dir

ARCHITECTURES = ("relu", "jumprelu", "topk")
CFG_NAME = "cfg.json"
WEIGHTS_NAME = "sae.safetensors"
FORMAT_TAG = "featgraph"


@dataclasses.dataclass
class SaeConfig:
    """Everything needed to rebuild an SAE besides its weights; also the ``cfg.json`` of our folder format."""

    d_in: int
    n_features: int
    architecture: str = "relu"
    k: int | None = None
    apply_b_dec_to_input: bool = True
    hook_name: str | None = None
    model_name: str | None = None
    source_format: str = FORMAT_TAG
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture {self.architecture!r} is not one of {ARCHITECTURES}")
        if self.architecture == "topk" and (self.k is None or self.k < 1):
            raise ConfigError(f"a topk SAE needs k >= 1, got k={self.k!r}")
        if self.d_in < 1 or self.n_features < 1:
            raise ConfigError(f"d_in and n_features must be >= 1, got {self.d_in} and {self.n_features}")

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT_TAG, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str = "cfg.json") -> SaeConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"d_in", "n_features"} - obj.keys()
        if missing:
            raise SaeFormatError(f"{where}: missing keys {sorted(missing)}")
        for key, (ok, want) in _CFG_TYPES.items():  # a wrong type: one line naming file, key and value
            if key in obj and not ok(obj[key]):
                raise SaeFormatError(f"{where}: {key}={json.dumps(obj[key])[:60]} is not {want}")
        try:
            return cls(**{k: v for k, v in obj.items() if k in names})
        except ConfigError as e:
            raise SaeFormatError(f"{where}: {e}") from e


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_CFG_TYPES: dict[str, tuple[Any, str]] = {
    "d_in": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "n_features": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "architecture": (lambda v: v in ARCHITECTURES, f"one of {list(ARCHITECTURES)}"),
    "k": (lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1"),
    "apply_b_dec_to_input": (lambda v: isinstance(v, bool), "true or false"),
    "hook_name": (lambda v: v is None or isinstance(v, str), "null or a string"),
    "model_name": (lambda v: v is None or isinstance(v, str), "null or a string"),
    "source_format": (lambda v: isinstance(v, str), "a string"),
    "extra": (lambda v: isinstance(v, dict), "an object"),
}


class SaeOutput(NamedTuple):
    """What :meth:`Sae.forward` returns."""

    x_hat: torch.Tensor  #: reconstruction ``[..., d_in]``
    acts: torch.Tensor  #: feature activations ``[..., F]``


class Sae(torch.nn.Module):
    """A sparse autoencoder with featgraph's canonical weight layout (see module docstring)."""

    def __init__(self, cfg: SaeConfig, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        super().__init__()
        self.cfg = cfg
        d, F = cfg.d_in, cfg.n_features
        kw = {"dtype": dtype, "device": device}
        self.W_enc = torch.nn.Parameter(torch.zeros(d, F, **kw))
        self.b_enc = torch.nn.Parameter(torch.zeros(F, **kw))
        self.W_dec = torch.nn.Parameter(torch.zeros(F, d, **kw))
        self.b_dec = torch.nn.Parameter(torch.zeros(d, **kw))
        if cfg.architecture == "jumprelu":
            self.threshold = torch.nn.Parameter(torch.zeros(F, **kw))
        else:
            self.threshold = None

    # -- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_tensors(
        cls,
        tensors: dict[str, torch.Tensor],
        cfg: SaeConfig,
        *,
        where: str = "<tensors>",
        check_finite: bool = True,
    ) -> Sae:
        """Build from canonical tensors (``W_enc``, ``b_enc``, ``W_dec``, ``b_dec``, optional ``threshold``)."""
        d, F = cfg.d_in, cfg.n_features
        want = {"W_enc": (d, F), "b_enc": (F,), "W_dec": (F, d), "b_dec": (d,)}
        if cfg.architecture == "jumprelu":
            want["threshold"] = (F,)
        for name, shape in want.items():
            if name not in tensors:
                raise SaeFormatError(f"{where}: tensor {name!r} is missing (have {sorted(tensors)})")
            got = tuple(tensors[name].shape)
            if got != shape:
                raise ShapeMismatchError(f"{where}: {name} has shape {list(got)}, expected {list(shape)}")
            if check_finite and not torch.isfinite(tensors[name]).all():
                bad = int((~torch.isfinite(tensors[name])).sum())
                raise BadWeightsError(f"{where}: {name} has {bad} NaN/inf values")
        dtype = tensors["W_dec"].dtype if tensors["W_dec"].is_floating_point() else torch.float32
        sae = cls(cfg, dtype=torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype)
        with torch.no_grad():
            for name in want:
                getattr(sae, name).copy_(tensors[name])
        return sae

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def n_features(self) -> int:
        return self.cfg.n_features

    # -- forward -----------------------------------------------------------------------------------------------
    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        arch = self.cfg.architecture
        if arch == "relu":
            return torch.relu(pre)
        if arch == "jumprelu":
            # relu(pre) * (pre > threshold), as SAELens, Gemma Scope and dictionary_learning all compute it: for
            # a negative threshold, pre in (threshold, 0] gives 0, not pre
            return torch.relu(pre) * (pre > self.threshold)
        acts = torch.relu(pre)  # topk
        top = acts.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(acts).scatter_(-1, top.indices, top.values)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.pre_acts(x))

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        return acts @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> SaeOutput:
        acts = self.encode(x)
        return SaeOutput(self.decode(acts), acts)

    # -- featgraph folder format -------------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        out = {n: getattr(self, n).detach() for n in ("W_enc", "b_enc", "W_dec", "b_dec")}
        if self.threshold is not None:
            out["threshold"] = self.threshold.detach()
        return out

    def save(self, folder: str | Path, *, dtype: torch.dtype | None = None) -> Path:
        """Write ``cfg.json`` + ``sae.safetensors`` into ``folder`` atomically (``dtype`` e.g. fp16 to save space)."""
        folder = Path(folder)
        tensors = {k: v.to("cpu", dtype or v.dtype).contiguous() for k, v in self.tensors().items()}
        with atomic_dir(folder) as tmp:
            save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
            write_json_into(tmp / CFG_NAME, self.cfg.to_json())
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Sae:
        """Load a featgraph folder (``cfg.json`` + ``sae.safetensors``)."""
        folder = Path(folder)
        cfg = read_featgraph_cfg(folder)
        weights = folder / WEIGHTS_NAME
        from featgraph.io.weights import read_safetensors  # header checked, float weights

        tensors = read_safetensors(weights)
        return cls.from_tensors(tensors, cfg, where=str(weights))


def read_featgraph_cfg(folder: Path) -> SaeConfig:
    path = folder / CFG_NAME
    return SaeConfig.from_json(read_json(path), where=str(path))


def fold_decoder_norms(tensors: dict[str, torch.Tensor], norms: torch.Tensor) -> dict[str, torch.Tensor]:
    """Canonical tensors with per-feature ``norms`` (> 0) moved from the decoder into the encoder.

    ``W_dec / n``, ``W_enc * n``, ``b_enc * n`` and ``threshold * n``: every pre-activation is scaled by its
    feature's positive ``n``, so relu, jumprelu and a topk over pre-activations that the library already
    scaled by ``n`` select the same features, each activation is ``n`` times larger and its decoder row ``n``
    times shorter: ``x_hat`` is unchanged (up to float rounding). This is what SAELens's ``fold_W_dec_norm``
    and dictionary_learning's ``normalize_decoder`` do.
    """
    n = norms.to(tensors["W_dec"].dtype)
    out = dict(tensors)
    out["W_dec"] = tensors["W_dec"] / n[:, None]
    out["W_enc"] = tensors["W_enc"] * n[None, :]
    out["b_enc"] = tensors["b_enc"] * n
    if "threshold" in tensors:
        out["threshold"] = tensors["threshold"] * n
    return out


def as_dtype(sae: Sae, dtype: torch.dtype) -> Sae:
    """A copy of ``sae`` in ``dtype`` (same config), used to evaluate in float64."""
    if sae.W_dec.dtype == dtype:
        return sae
    return Sae.from_tensors({k: v.to(dtype) for k, v in sae.tensors().items()}, sae.cfg, where="as_dtype")


def encode_columns(sae: Sae, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Activations of the features ``idx`` only (``[B, len(idx)]``); exact for ReLU/JumpReLU SAEs."""
    xin = x - sae.b_dec if sae.cfg.apply_b_dec_to_input else x
    pre = xin @ sae.W_enc[:, idx] + sae.b_enc[idx]
    if sae.cfg.architecture == "jumprelu":
        return torch.relu(pre) * (pre > sae.threshold[idx])  # as Sae.activation (negative thresholds)
    return torch.relu(pre)
