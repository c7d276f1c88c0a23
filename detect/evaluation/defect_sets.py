"""Real-defect datasets on disk: MVTec AD, VisA and BTAD folders read as they are published.

>>> from detect.evaluation.defect_sets import read_defect_set                      # doctest: +SKIP
>>> ds = read_defect_set("mvtec_anomaly_detection/hazelnut")
>>> ds.layout, ds.name, ds.defect_classes
('mvtec', 'hazelnut', ('crack', 'cut', 'hole', 'print'))
>>> fit_images = ds.load_images(ds.train_good)         # list of uint8 (H, W, 3) arrays
>>> row = ds.test_defects[0]                           # Sample(image=Path, defect='crack', mask=Path)
>>> row.load_image().shape, row.load_mask().dtype      # ((1024, 1024, 3), dtype('bool'))
>>> rows = ds.evaluation_rows()                        # for detect.evaluation.evaluate.evaluate(rows, good, detector)

Layouts (``detect_layout`` tells them apart; ``read_defect_set`` dispatches):

* **MVTec AD** (``read_mvtec``): ``ROOT/train/good/*``, ``ROOT/test/good/*``,
  ``ROOT/test/<defect>/<name>.<ext>`` with the mask ``ROOT/ground_truth/<defect>/<name>_mask.png``.
  MVTec AD 2 style roots with a ``validation`` folder are not read.
* **BTAD** (``read_btad``): ``ROOT/train/ok/*``, ``ROOT/test/ok/*``, ``ROOT/test/ko/*`` with the
  mask ``ROOT/ground_truth/ko/<name>.<any image suffix>``. The defect class is ``ko`` (BTAD does not
  name its defects).
* **VisA** (``read_visa``): the official one-class split ``split_csv/1cls.csv`` (columns ``object,
  split, label, image, mask``; labels ``normal`` / ``anomaly``; paths relative to the VisA root).
  ``ROOT`` is the VisA root with ``category=`` the object (``candle``, ``pcb1``, ...), or the object's
  own folder (``ROOT/../split_csv/1cls.csv``). The split names no defect classes, so every anomaly
  is of class ``anomaly``.

Nothing is decoded until asked (``Sample.load_image`` / ``load_mask``); masks read as bool
``(H, W)``, nonzero = defect (VisA masks are 0/1, MVTec and BTAD 0/255). Images keep their stored
dtype (uint8, or uint16 for 16-bit files). A layout that is incomplete (no training images, a defect
image without its mask, a split row pointing at a missing file) raises ``DatasetLayoutError`` naming
the path, rather than silently evaluating on less.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from detect.errors import DatasetLayoutError
from detect.images import IMAGE_SUFFIXES
from synth.image import load_image, open_file

Layout = Literal["mvtec", "btad", "visa"]
#: the defect class of anomaly-free samples, whatever the layout calls them
GOOD = "good"
VISA_SPLIT_CSV = Path("split_csv") / "1cls.csv"


@dataclass(frozen=True)
class Sample:
    """One image of a real-defect set.

    ``image``   absolute path of the image file.
    ``defect``  ``"good"`` for anomaly-free images, else the defect class (MVTec: its folder name).
    ``mask``    path of the ground-truth mask, ``None`` for anomaly-free images.
    """

    image: Path
    defect: str
    mask: Path | None = None

    @property
    def is_good(self) -> bool:
        return self.defect == GOOD

    def load_image(self) -> np.ndarray:
        """The image as stored: uint8 (or uint16) ``(H, W)`` gray or ``(H, W, 3)`` RGB."""
        return _read(self.image)

    def load_mask(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """bool ``(H, W)``, True on the defect; all False for an anomaly-free image.

        ``shape`` is needed only for anomaly-free images (their mask is not stored); by default
        the image's own size is read from the file header.
        """
        if self.mask is None:
            if shape is None:
                from PIL import Image

                with open_file(self.image) as file, Image.open(file) as im:
                    shape = (im.height, im.width)
            return np.zeros(shape, dtype=bool)
        arr = _read(self.mask)
        if arr.ndim == 3:
            arr = arr.max(axis=2)
        return arr > 0


@dataclass(frozen=True)
class DefectSet:
    """A real-defect dataset of one object category, as published.

    ``root``          the folder read (absolute).
    ``layout``        ``"mvtec"``, ``"btad"`` or ``"visa"``.
    ``name``          the category (the folder name, or VisA's object).
    ``train_good``    anomaly-free training images (fit a detector on these).
    ``test_good``     anomaly-free test images (the false-positive budget and image AUROC negatives).
    ``test_defects``  defective test images, each with its defect class and mask.

    Every tuple is sorted by defect class, then file name, so the order is the same on every machine.
    """

    root: Path
    layout: Layout
    name: str
    train_good: tuple[Sample, ...]
    test_good: tuple[Sample, ...]
    test_defects: tuple[Sample, ...]

    @property
    def defect_classes(self) -> tuple[str, ...]:
        """The defect classes present in ``test_defects``, sorted."""
        return tuple(sorted({s.defect for s in self.test_defects}))

    @staticmethod
    def load_images(samples) -> list[np.ndarray]:
        """Decode ``samples``' images (stored dtype), e.g. ``ds.load_images(ds.train_good)``."""
        return [s.load_image() for s in samples]

    def evaluation_rows(self) -> list[dict]:
        """``test_defects`` as rows for ``detect.evaluation.evaluate.evaluate``: lazy ``image``/``mask``
        (``{"path": ...}``, decoded when scored), ``defect`` (the class) and ``image_path``
        (relative to ``root``)."""
        return [
            {
                "image": {"path": str(s.image)},
                "mask": None if s.mask is None else {"path": str(s.mask)},
                "defect": s.defect,
                "image_path": _relative(s.image, self.root),
            }
            for s in self.test_defects
        ]

    def good_rows(self, samples=None) -> list[dict]:
        """Anomaly-free rows (default ``test_good``) for ``evaluate``'s ``good_images``."""
        chosen = self.test_good if samples is None else samples
        return [{"image": {"path": str(s.image)}, "source_id": _relative(s.image, self.root)} for s in chosen]


# ------------------------------------------------------------------------------------ layouts


def detect_layout(root: str | Path) -> Layout | None:
    """Which real-defect layout ``root`` follows, or ``None`` (e.g. a dataset build or an image folder)."""
    root = Path(root)
    if not root.is_dir():
        return None
    if (root / "train" / "good").is_dir() and (root / "test").is_dir():
        return "mvtec"
    if (root / "train" / "ok").is_dir() and (root / "test").is_dir():
        return "btad"
    if (root / VISA_SPLIT_CSV).is_file() or (root.parent / VISA_SPLIT_CSV).is_file():
        return "visa"
    return None


def read_defect_set(root: str | Path, category: str | None = None) -> DefectSet:
    """Read an MVTec AD, BTAD or VisA folder (see the module doc); ``category`` is for VisA only."""
    layout = detect_layout(root)
    if layout is None:
        raise DatasetLayoutError(
            f"{root} is not a real-defect folder: expected MVTec AD (train/good, test/<defect>, "
            "ground_truth/<defect>), BTAD (train/ok, test/ko, ground_truth/ko) or VisA (split_csv/1cls.csv)"
        )
    if category is not None and layout != "visa":
        raise DatasetLayoutError(f"{root} is a {layout} folder of one category; category= is for VisA roots only")
    if layout == "mvtec":
        return read_mvtec(root)
    if layout == "btad":
        return read_btad(root)
    return read_visa(root, category)


def read_mvtec(root: str | Path) -> DefectSet:
    """An MVTec AD category folder: ``train/good``, ``test/good``, ``test/<defect>``, ``ground_truth``."""
    root = Path(root).resolve()
    train = _images(root / "train" / "good", "anomaly-free training images")
    test_dir = root / "test"
    if not test_dir.is_dir():
        raise DatasetLayoutError(f"{root} has no test/ folder")
    test_good = _images(test_dir / "good", "anomaly-free test images") if (test_dir / "good").is_dir() else []
    defects = []
    for folder in sorted(d for d in test_dir.iterdir() if d.is_dir() and d.name != GOOD):
        for image in _images(folder, f"{folder.name} images"):
            mask = root / "ground_truth" / folder.name / f"{image.stem}_mask.png"
            if not mask.is_file():
                raise DatasetLayoutError(
                    f"defect image {image} has no mask {mask}; MVTec AD pairs test/<defect>/<name> with "
                    "ground_truth/<defect>/<name>_mask.png"
                )
            defects.append(Sample(image, folder.name, mask))
    return _checked(root, "mvtec", root.name, train, test_good, defects)


def read_btad(root: str | Path) -> DefectSet:
    """A BTAD category folder (``01``, ``02``, ``03``): ``train/ok``, ``test/ok``, ``test/ko``, ``ground_truth/ko``."""
    root = Path(root).resolve()
    train = _images(root / "train" / "ok", "anomaly-free training images")
    test_good = _images(root / "test" / "ok", "anomaly-free test images") if (root / "test" / "ok").is_dir() else []
    defects = []
    if (root / "test" / "ko").is_dir():
        masks = {p.stem: p for p in _images(root / "ground_truth" / "ko", "masks", required=False)}
        for image in _images(root / "test" / "ko", "defect images"):
            if image.stem not in masks:
                raise DatasetLayoutError(f"defect image {image} has no mask ground_truth/ko/{image.stem}.* in {root}")
            defects.append(Sample(image, "ko", masks[image.stem]))
    return _checked(root, "btad", root.name, train, test_good, defects)


def read_visa(root: str | Path, category: str | None = None) -> DefectSet:
    """One VisA object from the one-class split ``split_csv/1cls.csv`` (see the module doc)."""
    root = Path(root).resolve()
    if (root / VISA_SPLIT_CSV).is_file():
        visa_root = root
    elif (root.parent / VISA_SPLIT_CSV).is_file():
        visa_root, category = root.parent, category or root.name
    else:
        raise DatasetLayoutError(f"no {VISA_SPLIT_CSV} in {root} or its parent; VisA is read through its split file")
    with open(visa_root / VISA_SPLIT_CSV, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"object", "split", "label", "image", "mask"}
    if not rows or not needed <= set(rows[0]):
        raise DatasetLayoutError(f"{visa_root / VISA_SPLIT_CSV} lacks rows or the columns {sorted(needed)}")
    objects = sorted({r["object"] for r in rows})
    if category is None:
        if len(objects) > 1:
            raise DatasetLayoutError(f"{visa_root} holds {len(objects)} objects; choose one with category= "
                                     f"(--category): {', '.join(objects)}")
        category = objects[0]
    if category not in objects:
        raise DatasetLayoutError(f"VisA has no object {category!r}; choose from {', '.join(objects)}")
    train, test_good, defects = [], [], []
    for r in rows:
        if r["object"] != category:
            continue
        image = visa_root / r["image"].replace("\\", "/")
        if not image.is_file():
            raise DatasetLayoutError(f"{VISA_SPLIT_CSV} lists {r['image']} but {image} does not exist")
        if r["label"] == "normal":
            (train if r["split"] == "train" else test_good).append(image)
        elif r["split"] == "test":
            mask = visa_root / r["mask"].replace("\\", "/") if r["mask"].strip() else None
            if mask is None or not mask.is_file():
                raise DatasetLayoutError(f"VisA anomaly {r['image']} has no mask file ({r['mask']!r})")
            defects.append(Sample(image, "anomaly", mask))
    return _checked(visa_root, "visa", category, sorted(train), sorted(test_good), defects)


# ------------------------------------------------------------------------------------ helpers


def _images(folder: Path, what: str, required: bool = True) -> list[Path]:
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES) \
        if folder.is_dir() else []
    if required and not paths:
        raise DatasetLayoutError(f"no {what} ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return paths


def _checked(root: Path, layout: Layout, name: str, train: list[Path], test_good: list[Path],
             defects: list[Sample]) -> DefectSet:
    if not train:
        raise DatasetLayoutError(f"{root} ({layout}) has no anomaly-free training images")
    if not defects:
        raise DatasetLayoutError(f"{root} ({layout}) has no defective test images")
    defects = sorted(defects, key=lambda s: (s.defect, s.image.name))
    return DefectSet(
        root=root, layout=layout, name=name,
        train_good=tuple(Sample(p, GOOD) for p in train),
        test_good=tuple(Sample(p, GOOD) for p in test_good),
        test_defects=tuple(defects),
    )


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _read(path: Path) -> np.ndarray:
    # the project's one file reader: regular files only, pixel limit checked from the header,
    # a corrupt or truncated file an InvalidImageError naming it
    return load_image(path)
