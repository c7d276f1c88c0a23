"""Detectors made elsewhere, behind the project's detector interface (``score`` -> ``Detection``).

A detector name with a prefix names one (``detect.registry.build_detector`` builds it):

* ``onnx:PATH``         an ONNX model, run with ``onnxruntime`` (CUDA when its GPU provider is present);
* ``torchscript:PATH``  a TorchScript file (``torch.jit.load``);
* ``anomalib:PATH``     an anomalib export: ``.onnx`` as above, OpenVINO ``.xml`` through the
                        ``openvino`` runtime, a pickled ``model.pt`` only with ``trust_pickle=True``
                        (``--trust-pickle``: unpickling runs code from the file);
* ``python:FILE.py:NAME`` / ``python:package.module:NAME``  ``NAME()`` gives an object with
                        ``score(images) -> (scores, maps)`` (or a dict with ``pred_score`` /
                        ``anomaly_map``) and, optionally, ``fit(images)``;
* ``ScoresFile(path)``  scores written by a detector that runs elsewhere (``--scores FILE``).

Models are used as they are: nothing is fitted (a ``python:`` object's own ``fit`` is called when
it has one). What a model needs is read from it: input size, layout (NCHW / NHWC), a fixed batch
(the last batch is padded), channels (gray images are repeated to 3 channels for RGB models, RGB
images turned to luma for 1-channel ones). Images go in as float in [0, 1] (anomalib's exports
normalise inside), or ImageNet-normalised with ``normalize="imagenet"``. The score is the output
named ``pred_score``, else the one with one value per image; the map ``anomaly_map``, else the
image-shaped one (a model with a map only is scored by the map's maximum; one with a score only
gives image-level metrics). Maps are resized to each image's own size. Larger = more anomalous;
``higher_is_normal=True`` flips scores and maps.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from synth.files import sha256_file

from detect.detectors.detector import Detection, map_shape, resize_maps
from detect.errors import DetectError, DetectorFileError, InvalidImagesError
from detect.images import to_float_image

SCORE_NAME, MAP_NAME = "pred_score", "anomaly_map"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
#: side of the zero batch that probes a model whose input size is not fixed
PROBE_SIDE = 256
PICKLE_REFUSAL = ("{path} is a pickle: loading it runs whatever code it holds; pass --trust-pickle "
                  "(trust_pickle=True) only for a file you trust, or export the model to ONNX")


class ModelOutputError(DetectError):
    """A model whose inputs or outputs cannot be read as an anomaly detector's."""


#: prefixes of the names of detectors made elsewhere
KINDS = ("onnx", "torchscript", "anomalib", "python")


def is_external(name: str) -> bool:
    """True for a name with one of the ``KINDS`` prefixes (``onnx:model.onnx``)."""
    return isinstance(name, str) and ":" in name and name.split(":", 1)[0] in KINDS


def display_name(name: str) -> str:
    """``onnx:/long/path/model.onnx`` -> ``onnx:model.onnx`` (built-in names as they are)."""
    if not is_external(name):
        return name
    kind, target = name.split(":", 1)
    if kind == "python":
        where, obj = target.rsplit(":", 1) if ":" in target else (target, "")
        return f"python:{Path(where).name if where.endswith('.py') else where}:{obj}"
    return f"{kind}:{Path(target).name}"



def model_path(name: str) -> Path | None:
    """The file an external detector's name reads (the model, or a ``python:`` object's ``.py``
    file); ``None`` for ``python:package.module:NAME``."""
    kind, target = name.split(":", 1)
    if kind == "python":
        where = target.rsplit(":", 1)[0]
        return Path(where) if where.endswith(".py") else None
    return Path(target)

def build_external(name: str, *, trust_pickle: bool = False, normalize: str | None = None,
                   higher_is_normal: bool = False, layout: str | None = None, channels: int | None = None,
                   image_size: int | None = None, batch_size: int = 8, device: str | torch.device = "cpu",
                   seed: int = 0, time_limit_s: float | None = None) -> "ExternalDetector":
    """The detector a prefixed name (see the module doc) stands for. ``seed`` is accepted for the
    common detector options and unused (an external model is deterministic or its own business);
    ``time_limit_s`` bounds the time the detector may spend scoring, from its creation on (a web
    app builds one per run)."""
    kind, target = name.split(":", 1)
    common = dict(name=name, higher_is_normal=_flag(higher_is_normal, "higher_is_normal"), batch_size=batch_size,
                  time_limit_s=time_limit_s)
    if kind == "python":
        return PythonDetector(target, **common)
    path = Path(target).expanduser()
    if not path.is_file():
        raise DetectorFileError(f"{kind} detector file {path} does not exist")
    if normalize not in (None, "none", "imagenet"):
        raise DetectError(f"normalize={normalize!r}: choose none (RGB in [0, 1], the default) or imagenet")
    if layout not in (None, "nchw", "nhwc", "NCHW", "NHWC"):
        raise DetectError(f"layout={layout!r}: choose nchw or nhwc")
    if channels not in (None, 1, 3):
        raise DetectError(f"channels={channels!r}: choose 1 or 3")
    suffix = path.suffix.lower()
    if kind == "onnx" or (kind == "anomalib" and suffix == ".onnx"):
        backend = OnnxBackend(path, device)
    elif kind == "anomalib" and suffix == ".xml":
        backend = OpenVinoBackend(path)
    elif kind == "anomalib":
        if not trust_pickle:
            raise DetectorFileError(PICKLE_REFUSAL.format(path=path))
        backend = TorchBackend(path, _load_pickled_model(path), device, layout, channels)
    else:
        backend = TorchBackend(path, _load_torchscript(path), device, layout, channels)
    return ModelDetector(backend, normalize=None if normalize == "none" else normalize,
                         layout=None if layout is None else layout.lower(), image_size=image_size, **common)


def _flag(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise DetectError(f"{what}={value!r}: write true or false")


def file_facts(path: Path) -> dict[str, Any]:
    """File name, size in bytes and sha256 of a model file (the summary's record of what was run)."""
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _as_uint8_rgb(image: Any, what: str) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` by the project's one conversion rule (gray repeated, alpha dropped)."""
    img = to_float_image(image, what)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return (img * 255.0 + 0.5).astype(np.uint8)


# ------------------------------------------------------------------------------------- base
class ExternalDetector:
    """What every external detector shares: used as given (no fitting), scores flipped when
    ``higher_is_normal``, maps resized to each image's size, a ``describe()`` for the summary."""

    #: an external model is used as given; ``fit`` is a no-op unless a subclass says otherwise
    needs_fit = False
    #: True for detectors that look scores up by the rows' file names (``ScoresFile``)
    scores_by_name = False

    def __init__(self, name: str, *, higher_is_normal: bool = False, batch_size: int = 8,
                 time_limit_s: float | None = None) -> None:
        if batch_size < 1:
            raise DetectError(f"batch_size must be >= 1, got {batch_size}")
        self.name = name
        self.time_limit_s = time_limit_s
        self.deadline = None if time_limit_s is None else time.monotonic() + float(time_limit_s)
        self.higher_is_normal = higher_is_normal
        self.batch_size = int(batch_size)
        self.device = torch.device("cpu")

    def fit(self, images, *, progress: bool = False) -> "ExternalDetector":
        return self

    def to(self, device: str | torch.device) -> "ExternalDetector":
        self.device = torch.device(device)
        return self

    def config(self) -> dict[str, Any]:
        return {"higher_is_normal": self.higher_is_normal, "batch_size": self.batch_size}

    def describe(self) -> dict[str, Any]:
        """The summary's ``detector`` block: what was run and which outputs were read."""
        return {"name": self.name, **self._facts()}

    def _facts(self) -> dict[str, Any]:
        return {}

    def _check_time(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DetectError(f"{display_name(self.name)} took longer than the {self.time_limit_s:g} s allowed per run; "
                              "score fewer images, or run it with the command line (anomalyforge evaluate/stress)")

    def save(self, path) -> None:
        raise DetectError(f"{self.name} is an external detector; it is used from its own file, not saved")

    def _finish(self, scores: np.ndarray, maps: Sequence[np.ndarray] | None, shapes: Sequence[tuple[int, int]],
                map_size: int | None) -> Detection:
        """Scores float32 ``(N,)`` and maps at ``shapes`` (each shrunk to ``map_size``); flipped when
        ``higher_is_normal``. Without maps, every map is constant at its image's score (no pixel
        information: pixel metrics are then left out, see ``describe``)."""
        sign = -1.0 if self.higher_is_normal else 1.0
        scores = sign * np.asarray(scores, np.float32).reshape(-1)
        targets = [map_shape(s, map_size) for s in shapes]
        if maps is None:
            return Detection(scores=scores, maps=[np.full(t, s, np.float32) for t, s in zip(targets, scores)])
        out = []
        for m, target in zip(maps, targets):
            m = np.ascontiguousarray(m, dtype=np.float32) * np.float32(sign)
            if m.shape != tuple(target):  # torch only where there is resizing to do
                m = resize_maps(torch.from_numpy(m)[None], [target], antialias=bool(map_size))[0]
            out.append(m)
        return Detection(scores=scores, maps=out)


# ------------------------------------------------------------------------------------ models
@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: name, shape (an int per fixed dimension, None where it varies), type."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def text(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} [{dims}] {self.dtype}"


class OnnxBackend:
    """An ONNX model in ``onnxruntime``: CUDA when the GPU provider is present and ``device`` is CUDA."""

    kind = "onnx"

    def __init__(self, path: Path, device: str | torch.device = "cpu") -> None:
        import onnxruntime as ort

        self.path = path
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for every kind of bad file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DetectorFileError(f"{path} is not an ONNX model onnxruntime can run ({first})") from None
        self.provider = self.session.get_providers()[0]
        self.inputs = [self._info(i) for i in self.session.get_inputs()]
        self.outputs = [self._info(o) for o in self.session.get_outputs()]

    @staticmethod
    def _info(node) -> TensorInfo:
        shape = tuple(d if isinstance(d, int) else None for d in (node.shape or ()))
        return TensorInfo(node.name, shape, str(node.type).replace("tensor(", "").rstrip(")"))

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self.session.run(None, {self.inputs[0].name: batch})
        return {o.name: np.asarray(v) for o, v in zip(self.outputs, values)}


class OpenVinoBackend:
    """An OpenVINO IR model (``.xml`` next to its ``.bin``), as anomalib's ``to_openvino`` writes it."""

    kind = "openvino"
    provider = "openvino CPU"

    def __init__(self, path: Path) -> None:
        try:
            import openvino as ov
        except ModuleNotFoundError:
            raise DetectError(f"{path} is an OpenVINO model: install the openvino runtime "
                              "(pip install 'anomalyforge[openvino]'), or use the export's model.onnx") from None
        self.path = path
        model = ov.Core().read_model(str(path))
        # as accurate as the model says: the CPU plugin would otherwise run bf16 where the CPU has it
        self.compiled = ov.Core().compile_model(model, "CPU", {"EXECUTION_MODE_HINT": "ACCURACY"})

        def info(port) -> TensorInfo:
            shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
            kind = port.get_element_type().get_type_name()  # f32, u8, boolean, ...
            return TensorInfo(port.get_any_name(), shape, {"f32": "float", "u8": "uint8", "f16": "float16"}.get(kind, kind))

        self.inputs = [info(p) for p in self.compiled.inputs]
        self.outputs = [info(p) for p in self.compiled.outputs]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        result = self.compiled(batch)
        return {o.name: np.asarray(result[port]) for o, port in zip(self.outputs, self.compiled.outputs)}


def _load_torchscript(path: Path):
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # torch raises RuntimeError/ValueError/zip errors for non-TorchScript files
        raise DetectorFileError(f"{path} is not a TorchScript file ({type(exc).__name__}: "
                                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None


def _load_pickled_model(path: Path):
    """anomalib's ``to_torch`` export: a pickled ``{"model": module}`` (needs anomalib installed)."""
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        raise DetectError(f"{path} needs the package {exc.name!r} to be unpickled: install it (anomalib's own "
                          "exports need anomalib), or use the export's model.onnx") from None
    except Exception as exc:
        raise DetectorFileError(f"{path} is not a torch model file ({type(exc).__name__}: {exc})") from None
    model = payload.get("model") if isinstance(payload, dict) else payload
    if not isinstance(model, torch.nn.Module):
        raise DetectorFileError(f"{path} holds no torch model (expected anomalib's {{'model': module}})")
    return model.eval()


class TorchBackend:
    """A TorchScript module or an unpickled torch module. Neither says what input it wants: NCHW
    RGB unless ``layout`` / ``channels`` say otherwise, any size (``image_size`` fixes one)."""

    def __init__(self, path: Path, module, device: str | torch.device, layout: str | None,
                 channels: int | None) -> None:
        self.path = path
        self.kind = "torchscript" if isinstance(module, torch.jit.ScriptModule) else "torch"
        self.provider = f"torch {torch.device(device).type}"
        self.module = module.to(torch.device(device))
        self.device = torch.device(device)
        c = channels or 3
        shape = (None, c, None, None) if (layout or "nchw").lower() == "nchw" else (None, None, None, c)
        self.inputs = [TensorInfo("input", shape, "float")]
        self.outputs: list[TensorInfo] = []

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            result = self.module(torch.from_numpy(batch).to(self.device))
        named = _named_outputs(result)
        if not self.outputs:
            self.outputs = [TensorInfo(k, tuple(v.shape), str(v.dtype)) for k, v in named.items()]
        return named


def _named_outputs(result: Any) -> dict[str, np.ndarray]:
    """A torch model's result as name -> array: a tensor, a tuple/list, a dict, a NamedTuple
    (anomalib's ``InferenceBatch``) or an object with ``pred_score`` / ``anomaly_map``."""
    if isinstance(result, torch.Tensor):
        items = {"output": result}
    elif hasattr(result, "_asdict"):
        items = result._asdict()
    elif isinstance(result, dict):
        items = dict(result)
    elif isinstance(result, (tuple, list)):
        items = {f"output{i}": v for i, v in enumerate(result)}
    else:
        items = {k: getattr(result, k, None) for k in (SCORE_NAME, MAP_NAME)}
    return {str(k): v.detach().float().cpu().numpy() if v.dtype.is_floating_point else v.detach().cpu().numpy()
            for k, v in items.items() if isinstance(v, torch.Tensor)}


@dataclass(frozen=True)
class InputPlan:
    """How images become the model's input: layout, channels, size (None = each image's own), batch."""

    name: str
    layout: str
    channels: int
    size: tuple[int, int] | None
    batch: int | None
    dtype: str

    def text(self) -> str:
        h, w = self.size if self.size else ("H", "W")
        dims = {"nchw": (self.channels, h, w), "nhwc": (h, w, self.channels)}[self.layout]
        batch = self.batch if self.batch else "N"
        return f"{self.name} [{', '.join(str(d) for d in (batch, *dims))}] {self.layout.upper()} {self.dtype}"


def plan_input(backend, layout: str | None, image_size: int | None) -> InputPlan:
    """Read layout, channels, size and batch off the model's first input (``layout`` confirms or,
    where the model does not say, chooses); a shape that is neither NCHW nor NHWC is an error."""
    if len(backend.inputs) != 1:
        raise ModelOutputError(_unreadable(backend, f"it has {len(backend.inputs)} inputs, expected one image batch"))
    info = backend.inputs[0]
    if len(info.shape) != 4:
        raise ModelOutputError(_unreadable(backend, f"its input has {len(info.shape)} dimensions, expected 4 "
                                                    "(NCHW or NHWC)"))
    batch, d1, d2, d3 = info.shape
    nchw, nhwc = d1 in (1, 3), d3 in (1, 3)
    found = "nchw" if nchw and not nhwc else "nhwc" if nhwc and not nchw else None
    if found is None and d1 is None and d3 is None:
        found = layout or "nchw"
    if found is None:
        found = layout if layout in ("nchw", "nhwc") and (d1 if layout == "nchw" else d3) in (1, 3) else None
    if found is None:
        raise ModelOutputError(_unreadable(backend, "its input is neither NCHW nor NHWC with 1 or 3 channels"))
    if layout is not None and layout != found:
        raise ModelOutputError(
            f"{backend.path.name}: layout={layout} was given but the model's input {info.text()} is "
            f"{found.upper()}; drop the option (the layout is read from the model) or export the model "
            f"with a {layout.upper()} input")
    channels, h, w = (d1, d2, d3) if found == "nchw" else (d3, d1, d2)
    size = (h, w) if h is not None and w is not None else (image_size, image_size) if image_size else None
    return InputPlan(info.name, found, channels or 3, size, batch, info.dtype)


def _unreadable(backend, why: str) -> str:
    inputs = "; ".join(i.text() for i in backend.inputs) or "none"
    outputs = "; ".join(o.text() for o in backend.outputs) or "none"
    return (f"{backend.path.name} cannot be used as an anomaly detector: {why}. Inputs: {inputs}. "
            f"Outputs: {outputs}. Expected one image input (NCHW or NHWC, 1 or 3 channels) and outputs named "
            f"{SCORE_NAME} / {MAP_NAME}, or one with one value per image (N) or (N, 1) and/or one image-shaped "
            "(N, H, W) or (N, 1, H, W)")


def choose_outputs(backend, outputs: dict[str, np.ndarray], batch: int) -> tuple[str | None, str | None]:
    """(score output, map output) by anomalib's names first, else by shape: one value per image,
    and image-shaped ``(N, H, W)`` / ``(N, 1, H, W)`` / ``(N, H, W, 1)``. Only float outputs count."""
    def floating(v: np.ndarray) -> bool:
        return np.issubdtype(v.dtype, np.floating)

    def per_image(v: np.ndarray) -> bool:
        return v.ndim >= 1 and v.shape[0] == batch and int(np.prod(v.shape[1:])) == 1

    def image_shaped(v: np.ndarray) -> bool:
        s = v.shape
        return (v.ndim == 3 and s[0] == batch and min(s[1:]) > 1) or (
            v.ndim == 4 and s[0] == batch and ((s[1] == 1 and min(s[2:]) > 1) or (s[3] == 1 and min(s[1:3]) > 1)))

    def pick(name: str, test: Callable[[np.ndarray], bool]) -> str | None:
        if name in outputs and test(outputs[name]):
            return name
        return next((k for k, v in outputs.items() if floating(v) and test(v)), None)

    score, amap = pick(SCORE_NAME, per_image), pick(MAP_NAME, image_shaped)
    if score is None and amap is None:
        raise ModelOutputError(_unreadable(backend, "no output is an anomaly score or map"))
    return score, amap


class ModelDetector(ExternalDetector):
    """A model file (ONNX, OpenVINO, TorchScript, pickled torch) as a detector."""

    def __init__(self, backend, *, normalize: str | None, layout: str | None, image_size: int | None,
                 **common: Any) -> None:
        super().__init__(**common)
        self.backend = backend
        self.normalize = normalize
        self.plan = plan_input(backend, layout, image_size)
        self.score_output, self.map_output = self._probe()

    def _probe(self) -> tuple[str | None, str | None]:
        """Run a zero batch once to see the outputs (and fail now, not after reading a dataset)."""
        h, w = self.plan.size or (PROBE_SIDE, PROBE_SIDE)
        n = self.plan.batch or 1
        batch = np.zeros((n, self.plan.channels, h, w), np.float32)
        try:
            outputs = self.backend.run(self._layout(batch))
        except Exception as exc:  # the runtime's own error: wrong layout, size or channels
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelOutputError(_unreadable(self.backend, f"it fails on a zero batch {self.plan.text()} "
                                                             f"({message}); --option layout=nhwc, channels=1 or "
                                                             "image_size=S may say what it expects")) from None
        return choose_outputs(self.backend, outputs, n)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "normalize": self.normalize or "none"}

    def _facts(self) -> dict[str, Any]:
        outputs = {o.name: o for o in self.backend.outputs}
        facts = {
            **file_facts(self.backend.path), "format": self.backend.kind, "runtime": self.backend.provider,
            "input": self.plan.text(), "normalize": self.normalize or "none (RGB in [0, 1])",
            "score_output": (outputs[self.score_output].text() if self.score_output
                             else f"maximum of {self.map_output}"),
            "map_output": outputs[self.map_output].text() if self.map_output else "none: image-level only",
        }
        if self.higher_is_normal:
            facts["higher_is_normal"] = True
        return facts

    @property
    def has_maps(self) -> bool:
        return self.map_output is not None

    def score(self, images, *, map_size: int | None = None) -> Detection:
        arrays = [self._channels(to_float_image(img, f"images[{i}]")) for i, img in enumerate(images)]
        if not arrays:
            raise InvalidImagesError("no images given; pass at least one image")
        step = self.plan.batch or self.batch_size
        scores, maps = [], []
        for start in range(0, len(arrays), step):
            self._check_time()
            for group in self._groups(arrays[start:start + step]):
                s, m = self._run(group)
                scores.append(s)
                maps += m
        return self._finish(np.concatenate(scores), maps if self.has_maps else None,
                            [a.shape[:2] for a in arrays], map_size)

    def _groups(self, chunk: list[np.ndarray]) -> list[list[np.ndarray]]:
        """A chunk as one batch when the model takes one size (or all images share one), else one
        image per batch (a model of any size runs each at its own)."""
        if self.plan.size is not None or len({a.shape for a in chunk}) == 1:
            return [chunk]
        return [[a] for a in chunk]

    def _channels(self, image: np.ndarray) -> np.ndarray:
        if image.shape[2] == self.plan.channels:
            return image
        if self.plan.channels == 3:
            return np.repeat(image, 3, axis=2)
        return (image @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]

    def _run(self, group: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        batch = torch.from_numpy(np.stack(group)).permute(0, 3, 1, 2)
        if self.plan.size is not None and tuple(batch.shape[-2:]) != self.plan.size:
            batch = F.interpolate(batch, size=self.plan.size, mode="bilinear", align_corners=False, antialias=True)
        array = batch.numpy()
        if self.normalize == "imagenet":
            channels = slice(0, self.plan.channels)
            array = (array - IMAGENET_MEAN[channels, None, None]) / IMAGENET_STD[channels, None, None]
        n = len(group)
        if self.plan.batch and n < self.plan.batch:  # a fixed batch: pad with copies of the last image
            array = np.concatenate([array, np.repeat(array[-1:], self.plan.batch - n, axis=0)])
        outputs = self.backend.run(self._layout(np.ascontiguousarray(array, np.float32)))
        amap = None
        if self.map_output is not None:
            amap = outputs[self.map_output].astype(np.float32)
            amap = amap[:, 0] if amap.ndim == 4 and amap.shape[1] == 1 else amap[..., 0] if amap.ndim == 4 else amap
            amap = amap[:n]
        if self.score_output is not None:
            scores = outputs[self.score_output].astype(np.float32).reshape(len(array), -1)[:n, 0]
        else:
            scores = amap.reshape(n, -1).max(axis=1)
        return scores, [] if amap is None else list(amap)

    def _layout(self, nchw: np.ndarray) -> np.ndarray:
        out = nchw if self.plan.layout == "nchw" else np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))
        if self.plan.dtype == "uint8":
            return (out * 255.0 + 0.5).astype(np.uint8)
        return out


# ------------------------------------------------------------------------------------ python
def load_python_object(target: str, what: str = "python:") -> Any:
    """``FILE.py:NAME`` or ``package.module:NAME`` -> ``NAME()``."""
    if ":" not in target:
        raise DetectError(f"{what}{target}: write python:FILE.py:NAME or python:package.module:NAME")
    where, name = target.rsplit(":", 1)
    if where.endswith(".py"):
        path = Path(where).expanduser()
        if not path.is_file():
            raise DetectorFileError(f"python detector file {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"anomalyforge_user_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            raise DetectError(f"python detector module {where!r} cannot be imported ({exc})") from None
    factory = getattr(module, name, None)
    if factory is None:
        raise DetectError(f"{where} has no {name!r}; python:{target} needs NAME() to give the detector")
    detector = factory()
    if not callable(getattr(detector, "score", None)):
        raise DetectError(f"{name}() from {where} has no score(images) method")
    return detector


class PythonDetector(ExternalDetector):
    """``NAME()`` from a Python file or module: ``score(images)`` on RGB uint8 ``(H, W, 3)`` arrays
    gives ``(scores, maps)`` or a dict with ``pred_score`` / ``anomaly_map``; maps ``(N, h, w)``
    (or a list of ``(h_i, w_i)``) at any resolution, or None for image-level metrics only."""

    def __init__(self, target: str, **common: Any) -> None:
        super().__init__(**common)
        self.target = target
        self.obj = load_python_object(target)
        self.needs_fit = callable(getattr(self.obj, "fit", None))
        self.has_maps = True

    def fit(self, images, *, progress: bool = False) -> "PythonDetector":
        if self.needs_fit:
            self.obj.fit([_as_uint8_rgb(img, f"fit images[{i}]") for i, img in enumerate(images)])
        return self

    def _facts(self) -> dict[str, Any]:
        where = self.target.rsplit(":", 1)[0]
        facts = file_facts(Path(where)) if where.endswith(".py") else {"module": where}
        return {**facts, "format": "python", "object": type(self.obj).__name__,
                "map_output": "maps" if self.has_maps else "none: image-level only"}

    def score(self, images, *, map_size: int | None = None) -> Detection:
        arrays = [_as_uint8_rgb(img, f"images[{i}]") for i, img in enumerate(images)]
        result = self.obj.score(arrays)
        if isinstance(result, dict):
            scores, maps = result.get(SCORE_NAME), result.get(MAP_NAME)
        elif isinstance(result, (tuple, list)) and len(result) == 2:
            scores, maps = result
        else:
            raise DetectError(f"{self.name}: score(images) returned {type(result).__name__}; return "
                              "(scores, maps) or {'pred_score': ..., 'anomaly_map': ...}")
        scores = np.asarray(scores, np.float32).reshape(-1) if scores is not None else None
        if scores is None or len(scores) != len(arrays):
            raise DetectError(f"{self.name}: score(images) gave {0 if scores is None else len(scores)} scores "
                              f"for {len(arrays)} images; return one score per image")
        if maps is not None:
            maps = [np.asarray(m, np.float32) for m in maps]
            if len(maps) != len(arrays) or any(m.ndim != 2 for m in maps):
                raise DetectError(f"{self.name}: maps must be one (h, w) array per image "
                                  f"({len(arrays)} images), or None")
        self.has_maps = maps is not None
        return self._finish(scores, maps, [a.shape[:2] for a in arrays], map_size)


# ------------------------------------------------------------------------------------ scores file
class ScoresFile(ExternalDetector):
    """Scores from a file (parquet or CSV) with columns ``file_name``, ``score`` and optionally
    ``map`` (a ``.npy`` or ``.png`` path, relative to the file's folder). Rows are matched to the
    dataset's by file name: the whole relative path, else the base name when it is unique."""

    scores_by_name = True

    def __init__(self, path: str | Path, *, higher_is_normal: bool = False) -> None:
        self.path = Path(path).expanduser()
        super().__init__(f"scores:{self.path.name}", higher_is_normal=higher_is_normal)
        self.table = self._read()
        self.has_maps = "map" in self.table.columns

    def _read(self):
        import pandas as pd

        if not self.path.is_file():
            raise DetectorFileError(f"scores file {self.path} does not exist")
        try:
            table = (pd.read_parquet(self.path) if self.path.suffix.lower() == ".parquet"
                     else pd.read_csv(self.path))
        except Exception as exc:  # pandas/pyarrow parse errors
            raise DetectorFileError(f"{self.path} is not a readable parquet or CSV file ({exc})") from None
        missing = [c for c in ("file_name", "score") if c not in table.columns]
        if missing:
            raise DetectorFileError(f"{self.path} lacks the column(s) {', '.join(missing)}; it needs file_name and "
                                    f"score (and optionally map); it has {', '.join(map(str, table.columns))}")
        table = table.assign(file_name=table["file_name"].astype(str))
        repeated = table["file_name"][table["file_name"].duplicated()].tolist()
        if repeated:
            raise DetectorFileError(f"{self.path} has more than one row for {', '.join(repeated[:5])}")
        return table.set_index("file_name")

    def _facts(self) -> dict[str, Any]:
        return {**file_facts(self.path), "format": "scores file", "rows": len(self.table),
                "map_output": "map column" if self.has_maps else "none: image-level only"}

    def _key(self, name: str) -> str | None:
        if name in self.table.index:
            return name
        base = Path(name).name
        hits = [k for k in self.table.index if Path(k).name == base]
        return hits[0] if len(hits) == 1 else None

    def require(self, names: Sequence[str]) -> None:
        """Every name must have a score: the error lists those that have none."""
        missing = [n for n in names if self._key(n) is None]
        if missing:
            shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            raise DetectError(f"{self.path.name} has no score for {len(missing)} of the {len(names)} images: {shown}")

    def score(self, images, *, map_size: int | None = None, names: Sequence[str] | None = None) -> Detection:
        if names is None:
            raise DetectError("a scores file scores images by file name; pass names=[...]")
        self.require(names)
        keys = [self._key(n) for n in names]
        scores = self.table.loc[keys, "score"].to_numpy(np.float32)
        shapes = [np.shape(img)[:2] for img in images]
        maps = [self._map(self.table.loc[k, "map"]) for k in keys] if self.has_maps else None
        return self._finish(scores, maps, shapes, map_size)

    def _map(self, value: Any) -> np.ndarray:
        path = Path(str(value))
        path = path if path.is_absolute() else self.path.parent / path
        if not path.is_file():
            raise DetectorFileError(f"map {path} named in {self.path.name} does not exist")
        if path.suffix.lower() == ".npy":
            amap = np.load(path)
        else:
            from synth.image import load_image

            amap = load_image(path)
            amap = amap.astype(np.float32) / (65535.0 if amap.dtype == np.uint16 else 255.0)
        amap = np.squeeze(np.asarray(amap, np.float32))
        if amap.ndim != 2:
            raise DetectorFileError(f"map {path} is not one (h, w) array (shape {amap.shape})")
        return amap
