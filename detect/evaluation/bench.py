"""``anomalyforge bench CONFIG.yaml``: which synthesis trains the best detector for *real* defects?

The experiment of ASBench (anomaly synthesis benchmark): a grid of

    datasets × syntheses (single methods and weighted hybrids) × pipelines × anomaly ratios × seeds

where every **cell** trains a pipeline (``segmenter``, ``draem``, ``defect_map``, see
``detect.training.synthetic_training``) on a real-defect set's ``train/good`` images with that synthesis and
ratio, then evaluates it on the set's real test images (``detect.evaluation.defect_sets``, MVTec AD / BTAD /
VisA layouts): image AUROC and AP, pixel AUROC and AP, AUPRO. Beside the cells, one **quality job**
per dataset × synthesis makes ``quality.images`` anomalies from the training images and measures
SSIM, PSNR, LPIPS (over synthetic × real defect pairs) and FID, KID, IS (against the real defect
images; each refused below its minimum image count) with ``detect.quality.metrics``.

Resumable: a finished cell writes ``OUTPUT/cells/<cell>/result.json`` (atomically) and is never
recomputed; an interrupted cell resumes its training from its last checkpoint, and its
``train_seconds`` counts every segment. A cell's folder name ends with a hash of its whole
configuration (dataset folder, synthesis weights, pipeline options, ratio, seed, image and pixel
size) and the project version: a changed configuration is a new cell, computed into its own folder,
never a reuse of a cell trained with another one. Distributed:
under ``accelerate launch --multi_gpu --num_processes N -m detect.evaluation.bench CONFIG.yaml`` process ``r``
runs jobs ``r, r + N, ...`` on its own device (on a machine without GPUs the same command runs N
CPU processes over gloo); the main process then writes the reports. A cell's result does not
depend on which process ran it, given the same threads per process: on CPU set ``OMP_NUM_THREADS``
alike (accelerate sets 1 per process), because float sums depend on the thread count.

Outputs (``OUTPUT/``): ``results.parquet`` and ``results.csv`` (one tidy row per cell),
``quality.parquet``/``.csv`` (one row per dataset × synthesis), and ``report.md`` with the tables
and ``*.png`` plots:

* ``cells``    every cell's metrics (its per-image test scores stay in its ``result.json``);
* ``seeds``    image AUROC mean ± sd over seeds;
* ``methods``  mean metrics per synthesis and per pipeline, and synthesis × pipeline (the design of
               ASBench's Table 5 on other pipelines);
* ``ratios``   metric per anomaly ratio, best–worst gap, r(ratio, metric) (this report's Pearson r
               of the ratio against the metric), and ASBench's Tables 7–8 statistic (Pearson r, across
               single methods, of each one's best–worst range over ratios against its mean);
* ``hybrids``  each hybrid against each of its methods and the weighted (theoretical) mean of
               its methods (Fig. 13);
* ``quality``  per synthesis metrics with the reference, feature network and image counts, and
               Pearson r and p of each against detection metrics (as ASBench's Table 9); metrics
               whose network weights are not available offline, or with too few images, are listed
               as skipped with the reason;
* ``findings`` whether ASBench's three findings hold on this grid: every comparison is a paired
               bootstrap over the same test images and seeds (``detect.evaluation.bench_report``),
               and a finding is stated only when significant on at least 20 anomaly-free images.

The report opens with warnings (datasets with fewer than 20 anomaly-free test images, cells whose
image-AUROC interval contains 0.5) and the settings the cells ran with (image size, steps, widths).

Config (YAML; paths relative to the config file)::

    output: runs/bench                # default: next to the config, <config name>/
    image_size: 128                   # every image is resized to this square for training and scoring
    pixel_size: 0                     # long side of maps for pixel metrics (0 = full resolution)
    datasets: {hazelnut: data/mvtec/hazelnut}
    methods: [cutpaste, draem, nsa]   # single synthesis methods (names from synth.registry)
    hybrids: {cutpaste+draem: {cutpaste: 0.5, draem: 0.5}}
    pipelines:                        # name: detector options (steps, lr, widths, ...)
      draem: {steps: 200, lr: 0.001}
      segmenter: {steps: 200}
    textures: data/dtd/images         # texture folder the anomalies fill from (DRAEM's papers: DTD);
                                      # default: DRAEM fills from the image's own shuffled tiles
    ratios: [0.5, 1.0]
    seeds: [0, 1, 2]                  # default: 3 seeds (the report gives mean ± sd and paired tests)
    quality: {images: 32, features: [inception, efficientnet-lite0], lpips: alex}   # or quality: false
    keep_detectors: false             # also save each cell's fitted detector (detector.pt)
    detectors:                        # your own detectors, used as given, beside the grid (optional)
      mine: anomalib:exports/model.onnx
      raw: {detector: onnx:raw.onnx, normalize: imagenet}

Each of ``detectors`` is evaluated on every dataset's real test set like a cell (at its own input
size; no synthesis, ratio or seed): ``external.csv`` / ``.parquet`` and the report's ``external``
section hold its metrics beside the grid's.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detect.errors import DetectError
from detect.runtime import make_process_state, script_main
from synth.atomic import atomic_path, write_text_atomic
from synth.run_lock import claimed_folder

RESULT_FILE = "result.json"
#: detector settings the report's header states per pipeline
SETUP_KEYS = ("steps", "train_batch_size", "lr", "width", "rec_width", "disc_width", "decoder_width", "depths",
              "textures", "source_augment")
DEFAULT_SEEDS = (0, 1, 2)
DETECTION_METRICS = ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "aupro")
QUALITY_METRICS = ("SSIM", "PSNR", "LPIPS", "FID", "KID", "IS")


class BenchConfigError(DetectError):
    """A bench config that cannot be run (missing key, unknown method or pipeline, bad value)."""


# ------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class Synthesis:
    """A training synthesis: one method (``weights == {name: 1}``) or a weighted hybrid."""

    name: str
    weights: Mapping[str, float]

    @property
    def is_hybrid(self) -> bool:
        return len(self.weights) > 1

    def detector_methods(self) -> tuple[str, ...] | dict[str, float]:
        """The ``methods`` option of a pipeline: a name tuple for one method, weights for a hybrid."""
        return dict(self.weights) if self.is_hybrid else tuple(self.weights)


@dataclass(frozen=True)
class QualitySettings:
    """``images`` anomalies per dataset × synthesis; FID/KID/IS feature networks tried in order
    (each one missing offline is skipped with its reason); LPIPS trunk or ``None``."""

    images: int = 32
    features: tuple[str, ...] = ("inception", "efficientnet-lite0")
    lpips: str | None = "alex"


@dataclass(frozen=True)
class BenchConfig:
    output: Path
    datasets: Mapping[str, Path]
    syntheses: tuple[Synthesis, ...]
    pipelines: Mapping[str, Mapping[str, Any]]
    ratios: tuple[float, ...]
    seeds: tuple[int, ...]
    image_size: int = 128
    pixel_size: int = 0
    quality: QualitySettings | None = field(default_factory=QualitySettings)
    keep_detectors: bool = False
    textures: Path | None = None
    #: label -> (detector name such as ``onnx:PATH``, its options)
    detectors: Mapping[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """One training run of the grid. ``settings`` is canonical JSON of everything its result depends on
    (dataset folder, synthesis weights, pipeline options, ratio, seed, image and pixel size, project
    version); ``id`` names the cell and ends with a hash of it, so a changed configuration is a new cell."""

    dataset: str
    synthesis: Synthesis
    pipeline: str
    ratio: float
    seed: int
    settings: str = ""

    @property
    def id(self) -> str:
        return f"{self.dataset}__{self.synthesis.name}__{self.pipeline}__r{self.ratio:g}__s{self.seed}__{_hash(self.settings)}"


@dataclass(frozen=True)
class ExternalJob:
    """One of the config's own detectors on one dataset."""

    dataset: str
    label: str
    settings: str = ""

    @property
    def id(self) -> str:
        return f"{self.dataset}__{self.label}__{_hash(self.settings)}"


@dataclass(frozen=True)
class QualityJob:
    dataset: str
    synthesis: Synthesis
    settings: str = ""

    @property
    def id(self) -> str:
        return f"{self.dataset}__{self.synthesis.name}__{_hash(self.settings)}"


def _hash(settings: str) -> str:
    import hashlib

    return hashlib.sha256(settings.encode("utf-8")).hexdigest()[:12]


def _settings(**values: Any) -> str:
    """Canonical JSON of a job's configuration, with the project version (another version may compute
    another result)."""
    from synth.version import tool_version

    return json.dumps({**values, "version": tool_version()}, sort_keys=True, default=str)


class _QualityFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    images: int = Field(default=QualitySettings.images, ge=2)
    features: list[str] = list(QualitySettings.features)
    lpips: str | None = QualitySettings.lpips

    @field_validator("features", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class BenchFile(BaseModel):
    """The schema of a bench config file: each key's type, checked before anything runs.

    ``datasets`` and ``pipelines`` may be lists (of folders, of pipeline names) or mappings; a
    pipeline's value holds its options. ``quality: false`` turns the quality metrics off.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    output: str | None = None
    datasets: dict[str, str] = Field(min_length=1)
    methods: list[str] = []
    hybrids: dict[str, dict[str, float]] = {}
    pipelines: dict[str, dict[str, Any] | None] = Field(min_length=1)
    ratios: list[float] = Field(min_length=1)
    seeds: list[int] = [0]
    image_size: int = Field(default=128, ge=32)
    pixel_size: int = Field(default=0, ge=0)
    quality: _QualityFile | None = None
    keep_detectors: bool = False
    textures: str | None = None
    detectors: dict[str, str | dict[str, Any]] = {}

    @field_validator("datasets", mode="before")
    @classmethod
    def _folders(cls, value: Any) -> Any:
        if isinstance(value, list) and all(isinstance(p, str) for p in value):
            return {Path(p).name: p for p in value}
        return value

    @field_validator("pipelines", mode="before")
    @classmethod
    def _pipeline_names(cls, value: Any) -> Any:
        if isinstance(value, list) and all(isinstance(p, str) for p in value):
            return {p: {} for p in value}
        return value

    @field_validator("quality", mode="before")
    @classmethod
    def _quality_off(cls, value: Any) -> Any:
        return None if value is False else value

    @classmethod
    def check(cls, raw: Mapping[str, Any], source: str) -> dict[str, Any]:
        """``raw`` with its types checked (lists of folders and pipelines made mappings): the keys
        given, as plain values. ``BenchConfigError`` names the first key that is wrong."""
        try:
            parsed = cls.model_validate(dict(raw))
        except ValidationError as exc:
            raise BenchConfigError(f"{source}: {_first_problem(exc)}") from None
        given = parsed.model_dump(exclude_unset=True)
        if raw.get("quality") is False:
            given["quality"] = False
        return given


#: what a key holds, for messages (pydantic's own names types, e.g. "a valid list")
_EXPECTED = {"output": "a folder path", "datasets": "a mapping name: folder, or a list of folders",
             "methods": "a list of method names", "hybrids": "a mapping name: {method: weight, ...}",
             "pipelines": "a mapping pipeline: options, or a list of pipeline names",
             "ratios": "a list of numbers in (0, 1]", "seeds": "a list of whole numbers",
             "image_size": "a whole number >= 32", "pixel_size": "a whole number >= 0",
             "quality": "a mapping {images, features, lpips} or false", "keep_detectors": "true or false",
             "textures": "a folder of texture images", "detectors": "a mapping label: detector (e.g. onnx:model.onnx)"}


def _first_problem(exc: ValidationError) -> str:
    """One line for the first of pydantic's errors: the key (dotted path), what it must hold, what it got."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown config key {where!r}; known: {', '.join(BenchFile.model_fields)}"
    if error["type"] == "missing":
        return f"the config needs {where!r} ({_EXPECTED.get(where, 'see `anomalyforge bench --help`')})"
    expected = _EXPECTED.get(where) or error["msg"][0].lower() + error["msg"][1:]
    more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
    return f"{where} must be {expected.removeprefix('input should be ')}, got {error['input']!r}{more}"


def load_config(path: str | Path, output: str | Path | None = None) -> BenchConfig:
    """Read and check a bench YAML config (see the module doc)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise BenchConfigError(f"bench config {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BenchConfigError(f"{path} is not YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise BenchConfigError(f"{path}: the config must be a mapping with datasets, methods, pipelines, ratios")
    return config_from_dict(raw, base=path.parent, default_output=path.with_suffix(""), output=output,
                            source=f"bench config {path}")


def config_from_dict(raw: Mapping[str, Any], *, base: Path = Path("."), default_output: Path | None = None,
                     output: str | Path | None = None, source: str = "bench config") -> BenchConfig:
    """A ``BenchConfig`` from the parsed YAML mapping (paths relative to ``base``), its types
    checked by ``BenchFile``; messages start with ``source``."""
    from synth.registry import METHODS

    from detect.registry import DETECTORS
    from detect.training.synthetic_training import check_anomaly_ratio, method_weights
    from detect.training.train import PIPELINES

    raw = BenchFile.check(raw, source)
    datasets_raw = raw["datasets"]
    datasets = {str(k): (base / str(v)).resolve() if not Path(str(v)).is_absolute() else Path(str(v))
                for k, v in datasets_raw.items()}
    for name, folder in datasets.items():
        if not folder.is_dir():
            raise BenchConfigError(f"dataset {name!r}: {folder} is not a folder")

    syntheses: list[Synthesis] = []
    for name in raw.get("methods") or []:
        if name not in METHODS or name == "hybrid":
            raise BenchConfigError(f"unknown synth method {name!r}; choose from {', '.join(m for m in METHODS if m != 'hybrid')}")
        syntheses.append(Synthesis(str(name), {str(name): 1.0}))
    for name, weights in (raw.get("hybrids") or {}).items():
        if not isinstance(weights, Mapping) or len(weights) < 2:
            raise BenchConfigError(f"hybrid {name!r}: give at least two methods with weights, e.g. {{draem: 0.5, cutpaste: 0.5}}")
        try:
            normalised = method_weights(weights)
        except DetectError as exc:
            raise BenchConfigError(f"hybrid {name!r}: {exc}") from None
        syntheses.append(Synthesis(str(name), normalised))
    if not syntheses:
        raise BenchConfigError("the config needs at least one of 'methods' or 'hybrids'")
    if len({s.name for s in syntheses}) != len(syntheses):
        raise BenchConfigError("synthesis names must be unique (a hybrid named like a method?)")

    pipelines_raw = raw["pipelines"]
    pipelines = {}
    for name, options in pipelines_raw.items():
        if name not in PIPELINES or name not in DETECTORS:
            raise BenchConfigError(f"unknown pipeline {name!r}; choose from {', '.join(PIPELINES)}")
        options = dict(options or {})
        clash = sorted(set(options) & {"methods", "anomaly_ratio", "seed", "image_size"})
        if clash:
            raise BenchConfigError(f"pipeline {name!r}: {clash} are set by the grid, not per pipeline")
        pipelines[str(name)] = options
    textures = _textures_folder(raw.get("textures"), base)
    if textures is not None:  # every pipeline's anomalies fill from them (part of each cell's identity)
        pipelines = {name: {"textures": str(textures), **options} for name, options in pipelines.items()}

    try:
        ratios = tuple(check_anomaly_ratio(r) for r in raw["ratios"])
    except DetectError as exc:
        raise BenchConfigError(f"ratios: {exc}") from None
    seeds = tuple(int(s) for s in (raw.get("seeds") or DEFAULT_SEEDS))

    quality_raw = raw.get("quality", {})
    quality = None
    if quality_raw is not False and quality_raw is not None:
        if not isinstance(quality_raw, Mapping):
            raise BenchConfigError("quality: give a mapping {images, features, lpips} or false")
        features = quality_raw.get("features", QualitySettings.features)
        features = (features,) if isinstance(features, str) else tuple(features or ())
        quality = QualitySettings(images=int(quality_raw.get("images", QualitySettings.images)),
                                  features=features, lpips=quality_raw.get("lpips", QualitySettings.lpips) or None)
        if quality.images < 2:
            raise BenchConfigError("quality.images must be >= 2 (FID/KID need two images)")

    out = output if output is not None else raw.get("output")
    if out is None:
        if default_output is None:
            raise BenchConfigError("give an output folder (config key 'output' or --output)")
        out_path = default_output
    else:
        out_path = Path(out) if Path(out).is_absolute() or output is not None else (base / str(out))
    image_size = int(raw.get("image_size", 128))
    if image_size < 32:
        raise BenchConfigError(f"image_size must be >= 32, got {image_size}")
    return BenchConfig(output=out_path, datasets=datasets, syntheses=tuple(syntheses), pipelines=pipelines,
                       ratios=ratios, seeds=seeds, image_size=image_size, pixel_size=int(raw.get("pixel_size", 0)),
                       quality=quality, keep_detectors=bool(raw.get("keep_detectors", False)), textures=textures,
                       detectors=_external_detectors(raw.get("detectors") or {}, base))


def _textures_folder(value: Any, base: Path) -> Path | None:
    """The config's ``textures`` folder (relative to the config file), checked to hold images."""
    if value is None:
        return None
    from detect.training.synthetic_training import texture_files

    folder = Path(str(value)) if Path(str(value)).is_absolute() else (base / str(value)).resolve()
    try:
        texture_files(folder)
    except DetectError as exc:
        raise BenchConfigError(str(exc)) from None
    return folder


def _external_detectors(raw: Any, base: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """``detectors:`` of the config: label -> (name with its path made absolute, options)."""
    from detect.detectors.external import is_external

    if not isinstance(raw, Mapping):
        raise BenchConfigError("detectors: give a mapping label: onnx:PATH (or {detector: onnx:PATH, options...})")
    out = {}
    for label, value in raw.items():
        options = dict(value) if isinstance(value, Mapping) else {"detector": value}
        name = str(options.pop("detector", ""))
        if not is_external(name):
            raise BenchConfigError(f"detectors: {label!r} must name onnx:PATH, torchscript:PATH, anomalib:PATH or "
                                   f"python:FILE.py:NAME, not {name!r}")
        kind, target = name.split(":", 1)
        if kind != "python" or target.split(":")[0].endswith(".py"):
            path = Path(target.split(":")[0]) if kind == "python" else Path(target)
            resolved = path if path.is_absolute() else (base / path).resolve()
            target = target.replace(str(path), str(resolved), 1)
        out[str(label)] = (f"{kind}:{target}", options)
    return out


def cells(config: BenchConfig) -> list[Cell]:
    """Every cell of the grid, in a fixed order (dataset, synthesis, pipeline, ratio, seed)."""
    def cell(d: str, s: Synthesis, p: str, r: float, seed: int) -> Cell:
        settings = _settings(dataset=str(config.datasets[d]), weights=dict(s.weights), pipeline=p,
                             options=dict(config.pipelines[p]), ratio=r, seed=seed, image_size=config.image_size,
                             pixel_size=config.pixel_size)
        return Cell(d, s, p, r, seed, settings)

    return [cell(d, s, p, r, seed) for d in config.datasets for s in config.syntheses
            for p in config.pipelines for r in config.ratios for seed in config.seeds]


def external_jobs(config: BenchConfig) -> list[ExternalJob]:
    """Every own detector on every dataset; a job's identity includes the model file's content, so
    a changed model (same path) is evaluated again, never served the old model's result."""
    from detect.detectors.external import file_facts, model_path

    def job(d: str, label: str) -> ExternalJob:
        name, options = config.detectors[label]
        path = model_path(name)
        model = file_facts(path)["sha256"] if path is not None and path.is_file() else None
        settings = _settings(dataset=str(config.datasets[d]), detector=name, options=options, model=model,
                             pixel_size=config.pixel_size)
        return ExternalJob(d, label, settings)

    return [job(d, label) for d in config.datasets for label in config.detectors]


def quality_jobs(config: BenchConfig) -> list[QualityJob]:
    if config.quality is None:
        return []
    return [QualityJob(d, s, _settings(dataset=str(config.datasets[d]), weights=dict(s.weights),
                                       quality=config.quality, image_size=config.image_size,
                                       **({"textures": str(config.textures)} if config.textures else {})))
            for d in config.datasets for s in config.syntheses]


# ------------------------------------------------------------------------------------ running


class _Datasets:
    """Real-defect sets read once per process, with their training images decoded once."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self._sets: dict[str, Any] = {}
        self._train: dict[str, list[np.ndarray]] = {}

    def defect_set(self, name: str):
        from detect.evaluation.defect_sets import read_defect_set

        if name not in self._sets:
            self._sets[name] = read_defect_set(self.config.datasets[name])
        return self._sets[name]

    def train_images(self, name: str) -> list[np.ndarray]:
        if name not in self._train:
            ds = self.defect_set(name)
            # as stored (gray stays gray): the test images are scored as stored too
            self._train[name] = ds.load_images(ds.train_good)
        return self._train[name]


def run_bench(config: BenchConfig, *, cpu: bool = False, progress: bool = True) -> dict[str, Path] | None:
    """Run (or finish) every job of the grid on this process's share, then write the reports.

    Returns the written report files on the main process, ``None`` on the others.
    """
    state = make_process_state(cpu)
    # the processes of one launch share the folder (each its own cells); another run is refused
    with claimed_folder(config.output, shared=state.num_processes > 1, recursive=True):
        return _run_jobs(config, state, progress)


def _run_jobs(config: BenchConfig, state: Any, progress: bool) -> dict[str, Path] | None:
    """``run_bench`` in the claimed output folder."""
    jobs: list[Cell | QualityJob | ExternalJob] = [*cells(config), *external_jobs(config), *quality_jobs(config)]
    mine = jobs[state.process_index :: state.num_processes]
    data = _Datasets(config)
    for number, job in enumerate(mine, 1):
        folder = _job_folder(config, job)
        if _finished(config, job) is not None:
            continue  # finished earlier with this very configuration: never recomputed
        if progress:
            print(f"[bench {state.process_index}] {number}/{len(mine)} {job.id}", file=sys.stderr, flush=True)
        runner = {Cell: run_cell, ExternalJob: run_external, QualityJob: run_quality}[type(job)]
        result = runner(config, job, data, state.device)
        _write_json_atomically(folder / RESULT_FILE, result)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    return write_reports(config)


def _job_folder(config: BenchConfig, job: Cell | QualityJob | ExternalJob) -> Path:
    kind = {Cell: "cells", ExternalJob: "external", QualityJob: "quality"}[type(job)]
    return config.output / kind / job.id


def _finished(config: BenchConfig, job: Cell | QualityJob | ExternalJob) -> dict | None:
    """The job's result when it finished with exactly the job's configuration, else ``None``."""
    path = _job_folder(config, job) / RESULT_FILE
    if not path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    return result if result.get("settings") == json.loads(job.settings) else None


def run_cell(config: BenchConfig, cell: Cell, data: _Datasets, device: Any = "cpu") -> dict[str, Any]:
    """Train the cell's pipeline on the dataset's ``train/good`` and evaluate it on its real test set."""
    import shutil

    from detect.evaluation.evaluate import evaluate_defect_set
    from detect.registry import build_detector

    folder = _job_folder(config, cell)
    options = dict(config.pipelines[cell.pipeline])
    detector = build_detector(
        cell.pipeline, methods=cell.synthesis.detector_methods(), anomaly_ratio=cell.ratio, seed=cell.seed,
        image_size=config.image_size, device=str(device), **options,
    )
    ds = data.defect_set(cell.dataset)
    train_seconds = _train_in_segments(detector, data.train_images(cell.dataset), folder / "checkpoints")
    started = time.perf_counter()
    evaluation = evaluate_defect_set(ds, detector, pixel_size=config.pixel_size, ks=(1,))
    eval_seconds = time.perf_counter() - started
    if config.keep_detectors:
        detector.to("cpu").save(folder / "detector.pt")
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # the result is what a finished cell keeps
    s = evaluation.summary
    per_defect = {}
    if "defect" in evaluation.tables:
        table = evaluation.tables["defect"]
        for _, row in table.iterrows():
            per_defect[str(row["defect"])] = {k: _float(row[k]) for k in ("image_auroc", "pixel_auroc", "aupro") if k in row}
    return {
        "cell": cell.id, "settings": json.loads(cell.settings),
        "pipeline_setup": {k: v for k, v in detector.config().items() if k in SETUP_KEYS},
        "dataset": cell.dataset, "synthesis": cell.synthesis.name, "hybrid": cell.synthesis.is_hybrid,
        "weights": dict(cell.synthesis.weights), "pipeline": cell.pipeline, "ratio": cell.ratio, "seed": cell.seed,
        **{k: _float(s.get(k)) for k in DETECTION_METRICS},
        "recall_at_1": _float(s["recall_at_k"].get("1")) if s.get("recall_at_k") else None,
        "n_test": s["n_test"], "n_good": s["n_good"], "steps": detector.trained_steps,
        "train_seconds": round(train_seconds, 2), "eval_seconds": round(eval_seconds, 2),
        "image_size": config.image_size, "pixel_size": config.pixel_size, "device": str(device),
        "per_defect": per_defect,
        # per-image scores, in a fixed image order: the report's paired tests compare cells on them
        "scores": {"good": [float(v) for v in evaluation.good["score"]],
                   "anomalous": [float(v) for v in evaluation.samples["score"]]},
    }


def run_external(config: BenchConfig, job: ExternalJob, data: _Datasets, device: Any = "cpu") -> dict[str, Any]:
    """One of the config's own detectors, used as given (a ``python:`` object with ``fit`` is
    fitted on ``train/good``), evaluated on the dataset's real test set."""
    from detect.evaluation.evaluate import evaluate_defect_set
    from detect.registry import build_detector

    name, options = config.detectors[job.label]
    detector = build_detector(name, device=str(device), **options)
    if getattr(detector, "needs_fit", False):
        detector.fit(data.train_images(job.dataset))
    started = time.perf_counter()
    evaluation = evaluate_defect_set(data.defect_set(job.dataset), detector, pixel_size=config.pixel_size, ks=(1,))
    s = evaluation.summary
    return {
        "dataset": job.dataset, "detector": job.label, **{k: _float(s.get(k)) for k in DETECTION_METRICS},
        "recall_at_1": _float(s["recall_at_k"].get("1")) if s.get("recall_at_k") else None,
        "n_test": s["n_test"], "n_good": s["n_good"], "eval_seconds": round(time.perf_counter() - started, 2),
        "pixel_size": config.pixel_size, "device": str(device), "source": s["detector"],
        "settings": json.loads(job.settings),
    }


#: training segments of a cell: a checkpoint (and the time spent so far) after each
SEGMENTS = 4
TIME_FILE = "train_seconds.json"


def _train_in_segments(detector, images: Sequence[np.ndarray], checkpoints: Path) -> float:
    """Train ``detector`` to its ``steps`` in ``SEGMENTS`` segments, each resuming from the last
    checkpoint; returns the training seconds of every segment of this cell, earlier (interrupted)
    runs included: the time up to each checkpoint is kept beside it in ``TIME_FILE``."""
    from detect.training.synthetic_training import latest_checkpoint, train_on_synthetic

    started = time.perf_counter()
    fit = detector.prepare_fit(images)
    timing = checkpoints / TIME_FILE
    earlier = 0.0
    if latest_checkpoint(checkpoints) is not None and timing.is_file():
        earlier = float(json.loads(timing.read_text(encoding="utf-8"))["train_seconds"])
    every = max(1, math.ceil(detector.steps / SEGMENTS))
    for end in [*range(every, detector.steps, every), detector.steps]:
        train_on_synthetic(detector, fit, checkpoint_dir=checkpoints, checkpoint_every=every, resume=True,
                           progress=False, stop_at=end)
        _write_json_atomically(timing, {"train_seconds": earlier + time.perf_counter() - started})
    return earlier + time.perf_counter() - started


def quality_anomalies(images: Sequence[np.ndarray], synthesis: Synthesis, n: int, size: int,
                      seed: int = 0, textures: Sequence[str] = ()) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` anomalies of ``synthesis`` in ``images`` resized to ``size²``: (anomalous images, sources), uint8 RGB;
    ``textures``: texture files, one drawn per attempt (on a stream of its own) for the methods that fill from one."""
    import cv2

    from detect.images import load_image
    from synth import SynthError, get_method, synthesize

    method = get_method("hybrid", weights=dict(synthesis.weights)) if synthesis.is_hybrid else next(iter(synthesis.weights))
    small = [cv2.resize(_rgb(img), (size, size), interpolation=cv2.INTER_AREA) for img in images]
    rng = np.random.default_rng(seed)
    texture_rng = np.random.default_rng([seed, 2])
    made, sources = [], []
    attempts = 0
    while len(made) < n:
        attempts += 1
        if attempts > 8 * n:
            raise DetectError(f"{synthesis.name}: made only {len(made)} of {n} anomalies in {8 * n} attempts")
        i, j = (int(v) for v in rng.integers(len(small), size=2))
        try:
            fill = (load_image(textures[int(texture_rng.integers(len(textures)))]),) if textures else ()
            a = synthesize(small[i], method, seed=int(rng.integers(2**31)), partners=(small[j],), textures=fill)
        except SynthError:
            continue
        if not a.mask.any():
            continue
        made.append(_rgb(a.image))
        sources.append(small[i])
    return made, sources


def run_quality(config: BenchConfig, job: QualityJob, data: _Datasets, device: Any = "cpu") -> dict[str, Any]:
    """SSIM, PSNR, LPIPS, FID, KID and IS of one synthesis's anomalies against the dataset's real
    defects, as ASBench compares them (its pairing is not published: SSIM/PSNR/LPIPS here over every synthetic × real pair); against the
    anomalies' own sources only when the dataset has no defective test image. The reference used is
    recorded in ``reference``.

    A metric whose network weights are not available, or that has too few images
    (``detect.quality.metrics.distribution_quality``), is recorded in ``skipped`` with the reason.
    """
    import cv2

    from detect.errors import BackboneWeightsMissingError
    from detect.quality.diversity import LpipsScorer
    from detect.quality.features import FeatureExtractor
    from detect.quality.metrics import MAX_PAIRS, distribution_quality, paired_quality, unpaired_quality
    from detect.training.synthetic_training import texture_files

    q = config.quality
    size = config.image_size
    textures = () if config.textures is None else texture_files(config.textures)
    images, sources = quality_anomalies(data.train_images(job.dataset), job.synthesis, q.images, size, textures=textures)
    ds = data.defect_set(job.dataset)
    real = [cv2.resize(_rgb(s.load_image()), (size, size), interpolation=cv2.INTER_AREA) for s in ds.test_defects]
    values: dict[str, float] = {}
    skipped: dict[str, str] = {}
    scorer = None
    if q.lpips:
        try:
            scorer = LpipsScorer(q.lpips, device=device)
        except BackboneWeightsMissingError as exc:
            skipped["LPIPS"] = str(exc)
    else:
        skipped["LPIPS"] = "not asked for (quality.lpips is empty)"
    if real:
        reference_images = real
        reference = (f"{len(real)} real defect images of {job.dataset} (SSIM/PSNR/LPIPS over synthetic × real pairs, "
                     f"at most {MAX_PAIRS})")
        values.update(unpaired_quality(images, real, scorer=scorer, with_lpips=scorer is not None).means())
    else:
        reference_images = sources
        reference = f"the anomalies' own anomaly-free sources ({job.dataset} has no defective test image)"
        values.update(paired_quality(images, sources, scorer=scorer, with_lpips=scorer is not None).means())
    features: dict[str, str] = {}
    for kind in q.features:
        try:
            extractor = FeatureExtractor(kind, device=device)  # type: ignore[arg-type]
        except BackboneWeightsMissingError as exc:
            skipped[f"FID, KID, IS ({kind})"] = str(exc)
            continue
        dist = distribution_quality(images, reference_images, extractor=extractor,
                                    kid_subset_size=min(len(images), len(reference_images)))
        values.update({k: v for k, v in dist.as_dict().items() if "_std" not in k})
        skipped.update({f"{name} ({job.dataset})": f"refused: {reason}" for name, reason in dist.refusals().items()})
        features[kind] = dist.describe()
    return {"settings": json.loads(job.settings), "dataset": job.dataset, "synthesis": job.synthesis.name,
            "hybrid": job.synthesis.is_hybrid, "n_images": len(images), "n_reference": len(reference_images),
            "reference": reference, "features": features, "image_size": size, "metrics": values, "skipped": skipped}


# ------------------------------------------------------------------------------------ results


def collect(config: BenchConfig):
    """(cells DataFrame, quality DataFrame, skipped {metric: reason}) from the finished jobs."""
    import pandas as pd

    rows = []
    for cell in cells(config):
        r = _finished(config, cell)
        if r is not None:
            r = {k: v for k, v in r.items() if k not in ("per_defect", "settings", "scores", "pipeline_setup")}
            r["weights"] = json.dumps(r["weights"], sort_keys=True)
            rows.append(r)
    frame = pd.DataFrame(rows)
    qrows, skipped = [], {}
    for job in quality_jobs(config):
        r = _finished(config, job)
        if r is not None:
            qrows.append({"dataset": r["dataset"], "synthesis": r["synthesis"], "hybrid": r["hybrid"],
                          "n_images": r["n_images"], "n_reference": r["n_reference"], "reference": r["reference"],
                          "features": "; ".join(r["features"].values()), **r["metrics"]})
            skipped.update(r["skipped"])
    return frame, pd.DataFrame(qrows), skipped


def collect_scores(config: BenchConfig) -> dict[tuple, tuple[list[float], list[float]]]:
    """(dataset, synthesis, pipeline, ratio, seed) -> (good, anomalous) per-image test scores of every finished cell."""
    scores = {}
    for cell in cells(config):
        r = _finished(config, cell)
        if r is not None and "scores" in r:
            key = (cell.dataset, cell.synthesis.name, cell.pipeline, cell.ratio, cell.seed)
            scores[key] = (r["scores"]["good"], r["scores"]["anomalous"])
    return scores


def setup_lines(config: BenchConfig) -> list[str]:
    """What the cells ran with, for the report's header: image size, pixel size, each pipeline's
    steps, batch, learning rate and widths (as the finished cells recorded them)."""
    setups: dict[str, dict] = {}
    for cell in cells(config):
        result = _finished(config, cell)
        if result is not None and "pipeline_setup" in result:
            setups.setdefault(cell.pipeline, result["pipeline_setup"])
    pixel = "full resolution" if not config.pixel_size else f"maps shrunk to a long side of {config.pixel_size} px"
    lines = [f"Images resized to {config.image_size} × {config.image_size} px for training and scoring; pixel "
             f"metrics at {pixel}."]
    lines += [f"Pipeline {name}: " + ", ".join(f"{k} {v}" for k, v in setup.items()) + "."
              for name, setup in setups.items()]
    return lines


def write_reports(config: BenchConfig) -> dict[str, Path]:
    """Write the tidy tables and ``report.md`` (with plots) from every finished job."""
    from detect.evaluation import bench_report
    from detect.evaluation.report import markdown

    frame, quality, skipped = collect(config)
    if frame.empty:
        raise DetectError(f"no finished cells in {config.output}; run the grid first")
    out = config.output
    out.mkdir(parents=True, exist_ok=True)
    written = {"results_parquet": out / "results.parquet", "results_csv": out / "results.csv"}
    _write_table(frame, written["results_parquet"], written["results_csv"])
    if not quality.empty:
        written["quality_parquet"] = out / "quality.parquet"
        written["quality_csv"] = out / "quality.csv"
        _write_table(quality, written["quality_parquet"], written["quality_csv"])
    hybrids = {s.name: dict(s.weights) for s in config.syntheses if s.is_hybrid}
    written.update(bench_report.write(frame, quality, skipped, hybrids, out, collect_scores(config),
                                      setup=setup_lines(config)))
    external = _external_frame(config)
    if not external.empty:
        written["external_parquet"], written["external_csv"] = out / "external.parquet", out / "external.csv"
        _write_table(external.drop(columns=["source", "settings"]), written["external_parquet"], written["external_csv"])
        shown = external[["dataset", "detector", *DETECTION_METRICS, "recall_at_1", "n_test", "n_good"]]
        section = markdown(shown.set_index("dataset"), "Your own detectors, used as given, on the same test sets",
                           digits=3)
        report = written["report"]
        write_text_atomic(report, report.read_text(encoding="utf-8") + "\n## external\n\n" + section + "\n")
    return written


def _external_frame(config: BenchConfig):
    import pandas as pd

    rows = [json.loads(path.read_text(encoding="utf-8")) for path in
            (_job_folder(config, job) / RESULT_FILE for job in external_jobs(config)) if path.is_file()]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ helpers


def _rgb(image: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` from a stored image (gray, RGB, RGBA; uint8 or uint16)."""
    a = np.asarray(image)
    if a.dtype == np.uint16:
        a = (a // 257).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8) if a.dtype.kind == "f" else a.astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=2)
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def _float(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _write_table(frame, parquet: Path, csv: Path) -> None:
    with atomic_path(parquet) as tmp:
        frame.to_parquet(tmp, index=False)
    with atomic_path(csv) as tmp:
        frame.to_csv(tmp, index=False)


def _write_json_atomically(path: Path, payload: dict) -> None:
    # a crash mid-write never leaves a half result that would be taken as finished
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------------ command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("config", help="bench config YAML (datasets, methods, hybrids, pipelines, ratios, seeds)")
    parser.add_argument("--output", default=None, help="results folder (default: the config's 'output')")
    parser.add_argument("--cpu", action="store_true", help="do not use GPUs even when present")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the reports from finished cells")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run(args: argparse.Namespace) -> int:
    """Entry point of ``anomalyforge bench`` / ``python -m detect.evaluation.bench`` (also under ``accelerate launch``)."""
    config = load_config(args.config, args.output)
    if args.report_only:
        with claimed_folder(config.output, recursive=True):
            written = write_reports(config)
    else:
        written = run_bench(config, cpu=args.cpu, progress=not args.no_progress)
    if written:
        print(summary_text(config))
    return 0


def summary_text(config: BenchConfig) -> str:
    """A few lines for the terminal: the cells, mean image AUROC per synthesis, where the report is."""
    import pandas as pd

    frame = pd.read_parquet(config.output / "results.parquet")
    means = frame.groupby("synthesis")["image_auroc"].mean().sort_values(ascending=False)
    lines = [f"{len(frame)} cells; mean image AUROC per synthesis (over pipelines, ratios and seeds):"]
    lines += [f"  {name}: {value:.3f}" for name, value in means.items()]
    lines.append(f"report (tables, plots, ASBench's findings): {config.output / 'report.md'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    return script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
