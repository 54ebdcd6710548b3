"""A model of any format behind one interface: the :class:`Predictor` that ``seqtag predict`` tags with.

:func:`load_predictor` opens a model directory, a TorchScript ``.pt`` file, a ``torch.export``
directory or an ``.onnx`` file (:func:`model_kind` tells which from the path) and binds its
``predict``, ``predict_with_confidence`` and ``nbest`` to the batch size of a
:class:`PredictConfig` (how prediction runs: batch size, device, threads, worker processes,
chunk size); :func:`tag_sentences` calls the ones a request needs, and
:func:`process_predictor` loads a model once per process. Each format is imported only when it
is loaded, so an ONNX model loads without torch.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from seqtag.config import PredictConfig, config_argument
from seqtag.data.formats import Tagged
from seqtag.errors import SeqtagError

# -- predictors ------------------------------------------------------------------------------


class Predictor:
    """One model behind the three calls that tagging needs, whatever its format.

    Args:
        kind: the format in words (``model directory``, ``TorchScript file``, ...).
        source: the path, for messages.
        methods: ``predict(sentences)``, ``predict_with_confidence(sentences)`` and
            ``nbest(sentences, k)``, bound to the model and batch size; None where the format
            lacks the method.
        max_length: the longest sentence the model takes (0: any).
    """

    def __init__(self, kind: str, source: str, methods: dict[str, Callable | None], max_length: int = 0) -> None:
        self.kind = kind
        self.source = source
        self.methods = methods
        self.max_length = max_length

    def _method(self, name: str, what: str) -> Callable:
        method = self.methods.get(name)
        if method is None:
            raise SeqtagError(f"a {self.kind} ({self.source}) cannot give {what}: it has no {name}")
        return method

    def predict(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """One list of tags per sentence."""
        return [list(t) for t in self._method("predict", "tags")(sentences)]

    def predict_with_confidence(self, sentences: Sequence[Sequence[str]]) -> list[tuple[list[str], list[float]]]:
        """Per sentence: the best tags and the marginal probability of each."""
        out = self._method("predict_with_confidence", "confidences")(sentences)
        return [(list(tags), [float(p) for p in probs]) for tags, probs in out]

    def nbest(self, sentences: Sequence[Sequence[str]], k: int) -> list[list[tuple[list[str], float]]]:
        """Per sentence: up to ``k`` ``(tags, log_prob)``, best first (impossible ones dropped)."""
        out = self._method("nbest", "n-best tag sequences")(sentences, k)
        return [[(list(t), float(p)) for t, p in paths if math.isfinite(float(p))] for paths in out]


def bound_method(obj: Any, name: str, **keywords: Any) -> Callable | None:
    """``obj.name`` with those ``keywords`` it accepts, or None when ``obj`` has no such method."""
    method = getattr(obj, name, None)
    if method is None:
        return None
    try:
        accepted = inspect.signature(method).parameters
    except (TypeError, ValueError):  # builtins, TorchScript methods
        return method
    given = {k: v for k, v in keywords.items() if k in accepted}
    return partial(method, **given) if given else method


def model_kind(model: str | os.PathLike) -> str:
    """``onnx``, ``torchscript``, ``torch-export`` or ``directory``, from what is at the path."""
    path = Path(model)
    if path.is_file():
        return "onnx" if path.suffix == ".onnx" else "torchscript"
    if path.is_dir():
        from seqtag.serving.files import METADATA_NAME

        return "torch-export" if (path / METADATA_NAME).is_file() else "directory"
    raise SeqtagError(f"{model}: no such model file or directory")


KINDS = {
    "directory": "model directory",
    "torchscript": "TorchScript file",
    "torch-export": "torch.export directory",
    "onnx": "ONNX file",
}


def load_predictor(model: str | os.PathLike, config: PredictConfig | None = None) -> Predictor:
    """The :class:`Predictor` of a model directory, a TorchScript ``.pt`` file, a ``torch.export``
    directory or an ``.onnx`` file, with ``config``'s batch size, device and precision.

    Raises:
        SeqtagError: no such model, an unreadable one, or a device or precision the format (or the
            machine) cannot use.
        TypeError: a ``config`` that is not a :class:`~seqtag.config.PredictConfig`.
        ValueError: a ``config`` field out of its range (set after the config was made).
    """
    config = config_argument(config, PredictConfig, "config") or PredictConfig()
    kind = model_kind(model)
    source = str(model)
    bs = config.batch_size
    if kind in ("torch-export", "onnx") and config.device not in ("cpu", "auto"):
        raise SeqtagError(f"a {KINDS[kind]} runs on the CPU; got --device {config.device}")
    check_model_precision(kind, config.precision, config.device)
    if kind == "directory":
        from seqtag.model.tagger import Tagger

        backend: Any = Tagger.load(model, device=config.device)
    elif kind == "torchscript":
        from seqtag.device import resolve_device
        from seqtag.serving.torchscript import load_torchscript

        module = load_torchscript(model, map_location=resolve_device(config.device))
        module.batch_size = bs  # the scripted methods read it: checked above, like every format
        return Predictor(KINDS[kind], source, {
            "predict": module,
            "predict_with_confidence": getattr(module, "predict_with_confidence", None),
            "nbest": getattr(module, "nbest", None),
        })  # fmt: skip
    elif kind == "torch-export":
        from seqtag.serving.torch_export import load_torch_export

        backend = load_torch_export(model)
    else:
        try:
            from seqtag.serving.onnx_runner import OnnxTagger
        except ImportError as e:
            raise SeqtagError(f"{model}: ONNX models need onnxruntime (pip install 'seqtag[onnx]'): {e}") from None
        backend = OnnxTagger(model, intra_op_num_threads=config.threads_per_worker() or 0)
    methods = {name: bound_method(backend, name, batch_size=bs, precision=config.precision)
               for name in ("predict", "predict_with_confidence", "nbest")}  # fmt: skip
    return Predictor(KINDS[kind], source, methods, max_length=int(getattr(backend, "max_length", 0) or 0))


def check_model_precision(kind: str, precision: str, device: str) -> None:
    """Refuse a ``precision`` that a model of ``kind`` (:func:`model_kind`) on ``device`` cannot
    run: autocast is for model directories (exported files run in float32), and the device must
    run it (:func:`~seqtag.device.check_precision`); fp32 is always run, without importing torch."""
    if precision == "fp32":
        return
    if kind != "directory":
        raise SeqtagError(f"--precision {precision}: this {KINDS[kind]} runs in the float32 it was exported in; "
                          f"tag with the model directory for autocast")  # fmt: skip
    from seqtag.device import check_precision, resolve_device

    check_precision(resolve_device(device), precision)


def tag_sentences(
    predictor: Predictor, sentences: list[list[str]], confidence: bool = False, nbest: int = 0
) -> list[Tagged]:
    """Tag ``sentences``: ``(tags, probabilities or None, n-best or None)`` per sentence."""
    if confidence:
        pairs = predictor.predict_with_confidence(sentences)
        tags = [t for t, _ in pairs]
        probs: list = [p for _, p in pairs]
    else:
        tags = predictor.predict(sentences)
        probs = [None] * len(sentences)
    paths: list = predictor.nbest(sentences, nbest) if nbest else [None] * len(sentences)
    return list(zip(tags, probs, paths))


_PROCESS_PREDICTOR: dict[tuple, Predictor] = {}  # this process's models, each loaded by its first use


def process_predictor(model: str | os.PathLike, config: dict, set_threads: bool = False) -> Predictor:
    """The predictor of ``model`` with ``config`` (a :class:`PredictConfig` dict) in this process,
    loaded once; with ``set_threads``, after setting this process's share of torch threads."""
    key = (str(model), json.dumps(config, sort_keys=True))
    predictor = _PROCESS_PREDICTOR.get(key)
    if predictor is None:
        predict_config = PredictConfig.from_dict(config)
        if set_threads:
            set_torch_threads(predict_config.threads_per_worker())
        predictor = _PROCESS_PREDICTOR[key] = load_predictor(model, predict_config)
    return predictor


def set_torch_threads(threads: int) -> None:
    if threads:
        import torch  # not at the top: an ONNX model needs no torch

        torch.set_num_threads(threads)
