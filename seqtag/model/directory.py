"""Model directories: what ``Tagger.save`` writes and ``Tagger.load`` reads, checked as a whole.

A model directory holds ``config.json`` (``seqtag_version``, ``model``: the
:class:`~seqtag.config.TaggerConfig`, and optionally ``training`` and ``data``), ``vocab.json``
(the :class:`~seqtag.data.vocab.Vocabularies`) and ``weights.pt`` (the state dict, tensors only).
A model with a pretrained encoder also holds it in ``encoder/`` (:data:`ENCODER_DIR`: the
transformers config, ``model.safetensors``, the tokenizer; :func:`~seqtag.model.encoder.save_encoder`),
whose weights ``weights.pt`` leaves out; loading reads it from there, never from the network.
:func:`save_tagger` writes each file atomically; :func:`load_tagger` checks that they agree and
raises :class:`~seqtag.errors.SeqtagError` with one line when they do not.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from seqtag import __version__
from seqtag.config import DataConfig, TaggerConfig, TrainConfig
from seqtag.data.vocab import Vocabularies
from seqtag.device import resolve_device
from seqtag.errors import SeqtagError
from seqtag.fileio import atomic_write_bytes, atomic_write_text
from seqtag.model.encoder import load_encoder, save_encoder

CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE = "config.json", "vocab.json", "weights.pt"
ENCODER_DIR = "encoder"
"""The folder of a model directory that holds its pretrained encoder (fine-tuned or not)."""
ENCODER_WEIGHTS = "encoder.model."
"""The state-dict prefix of the encoder's transformer weights, which ``encoder/`` holds instead
of ``weights.pt`` (the encoder's scalar mix stays in ``weights.pt``)."""


def save_tagger(
    tagger: nn.Module, directory: str | Path, training: TrainConfig | None = None, data: Mapping[str, Any] | None = None
) -> None:
    """:meth:`Tagger.save <seqtag.model.tagger.Tagger.save>`: write ``config.json``, ``vocab.json`` and
    ``weights.pt`` into ``directory``, each to a temporary name and renamed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in tagger.state_dict().items() if not k.startswith(ENCODER_WEIGHTS)}
    buf = io.BytesIO()
    torch.save(state, buf)
    meta: dict[str, Any] = {"seqtag_version": __version__, "model": tagger.config.to_dict()}
    if training is not None:
        meta["training"] = training.to_dict()
    if data is not None:
        meta["data"] = dict(data.to_dict() if hasattr(data, "to_dict") else data)
    config_text = json.dumps(meta, indent=2) + "\n"  # fails here, before any write, if not JSON
    if tagger.encoder is not None:
        save_encoder(tagger.encoder.model, tagger.windows.tokenizer, directory / ENCODER_DIR)
    atomic_write_bytes(directory / WEIGHTS_FILE, buf.getvalue())
    atomic_write_text(directory / VOCAB_FILE, json.dumps(tagger.vocabs.to_dict(), ensure_ascii=False))
    atomic_write_text(directory / CONFIG_FILE, config_text)


def load_tagger(cls: type[nn.Module], directory: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """:meth:`Tagger.load <seqtag.model.tagger.Tagger.load>`: build ``cls(config, vocabs)`` (a
    :class:`~seqtag.model.tagger.Tagger`) from a model directory checked as a whole, and move it to
    ``device``."""
    directory = Path(directory)
    for name in (CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise SeqtagError(f"{directory}: not a seqtag model directory (no {name})")
    config = _read_config(directory / CONFIG_FILE)
    vocabs = _read_vocabs(directory / VOCAB_FILE)
    state = _read_weights(directory / WEIGHTS_FILE)
    check_vocab_sizes(state, vocab_sizes(vocabs), directory / VOCAB_FILE, directory / WEIGHTS_FILE)
    pretrained = None
    if config.encoder:
        if not (directory / ENCODER_DIR).is_dir():
            raise SeqtagError(f"{directory}: not a seqtag model directory (no {ENCODER_DIR}/, the model's encoder)")
        pretrained = load_encoder(directory / ENCODER_DIR)
    try:
        tagger = cls(config, vocabs, pretrained) if pretrained is not None else cls(config, vocabs)
    except ValueError as e:  # e.g. tags that do not follow the configured tag scheme
        raise SeqtagError(f"{directory}: config.json and vocab.json disagree ({e})") from None
    expected = {k: v for k, v in tagger.state_dict().items() if not k.startswith(ENCODER_WEIGHTS)}
    problem = _state_mismatch(state, expected)
    if problem:
        raise SeqtagError(f"{directory / WEIGHTS_FILE} does not match {CONFIG_FILE}/{VOCAB_FILE}: {problem}")
    check_finite(state, directory / WEIGHTS_FILE)
    _check_derived(state, expected, directory)
    # the encoder's own weights came from encoder/: the only keys weights.pt leaves out
    tagger.load_state_dict(state, strict=not config.encoder)
    dev = resolve_device(device)
    tagger.set_rnn_mode(dev)
    return tagger.to(dev)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SeqtagError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


_CONFIG_ENTRIES = {"seqtag_version": str, "model": TaggerConfig, "training": TrainConfig, "data": dict}
"""What ``config.json`` holds: the version that wrote it, the model's and its training's
configurations (``model`` required), and the data settings (read by :func:`trained_data_config`
where they are used)."""


def _read_config(path: Path) -> TaggerConfig:
    """The ``model`` entry of ``config.json``, every entry checked: each configuration with every
    field present (:func:`~seqtag.config.required_fields`) and each value valid."""
    meta = _read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        raise SeqtagError(f'{path}: expected a JSON object with a "model" object')
    unknown = sorted(set(meta) - set(_CONFIG_ENTRIES))
    if unknown:
        raise SeqtagError(f"{path}: unknown entries {unknown} (expected {', '.join(_CONFIG_ENTRIES)})")
    configs = {}
    for name, kind in _CONFIG_ENTRIES.items():
        value = meta.get(name)
        if value is None:
            continue
        if kind in (str, dict) and not isinstance(value, kind):
            raise SeqtagError(f'{path}: expected "{name}" {"a string" if kind is str else "an object"}, got {value!r}')
        if kind not in (str, dict):
            try:
                configs[name] = kind.from_dict(value, complete=True)
            except (TypeError, ValueError) as e:
                raise SeqtagError(f'{path}: bad "{name}": {e}') from None
    return configs["model"]


def _read_vocabs(path: Path) -> Vocabularies:
    vocab = _read_json(path)
    try:
        return Vocabularies.from_dict(vocab)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SeqtagError(f"{path}: not a seqtag vocabulary ({e})") from None


def vocab_sizes(vocabs: Vocabularies) -> dict[str, int]:
    """The size of each vocabulary, by its name in ``vocab.json``: what :func:`check_vocab_sizes` takes."""
    return {"words": len(vocabs.words), "chars": len(vocabs.chars), "tags": len(vocabs.tags)}


VOCAB_TENSORS = {"words": "word_embedding.weight", "chars": "char_cnn.embedding.weight", "tags": "output.weight"}
"""The tensor of a tagger's state dict whose rows are each vocabulary's ids: the word and
character embeddings, and the output layer (one row per tag)."""


def check_vocab_sizes(
    state: Mapping[str, Tensor], sizes: Mapping[str, int], vocab: str | Path, weights: str | Path, prefix: str = ""
) -> None:
    """Refuse vocabularies whose sizes are not those the weights were trained with (the files of
    two models, or an edited list): each of :data:`VOCAB_TENSORS` in ``state`` (its keys with
    ``prefix``, e.g. ``"tagger."`` in an export), of shape ``(n, dim)``, has ``n`` rows, one per
    entry of ``sizes`` (from :func:`vocab_sizes`). A vocabulary whose tensor the model lacks (no character CNN) is not checked.
    Every format's loader calls it once: the model directory, TorchScript, ``torch.export``.

    Raises:
        SeqtagError: ``VOCAB: N tags, but WEIGHTS has M rows in output.weight ...``.
    """
    for name, key in VOCAB_TENSORS.items():
        tensor = state.get(prefix + key)
        if name in sizes and isinstance(tensor, Tensor) and tensor.dim() == 2 and tensor.size(0) != sizes[name]:
            raise SeqtagError(
                f"{vocab}: {sizes[name]} {name}, but {weights} has {tensor.size(0)} rows in {prefix + key} "
                f"(one per {name[:-1]}): the two come from different models"
            )


def _check_derived(state: Mapping[str, Tensor], expected: Mapping[str, Tensor], directory: Path) -> None:
    """The tensors that are not learned but derived from config.json and vocab.json (the CRF's
    masks of the moves the tag scheme allows) must be those the two files give: reordered or
    renamed tags, or another tag scheme, keep every size but not these."""
    for key, tensor in expected.items():
        if not tensor.is_floating_point() and not torch.equal(state[key], tensor):
            raise SeqtagError(
                f"{directory / WEIGHTS_FILE}: {key} is not what the tags of {VOCAB_FILE} under the tag_scheme of "
                f"{CONFIG_FILE} give: the tags were reordered or edited, or the files come from different models"
            )


def load_tensors(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, so that a crafted file cannot run code,
    without torch's warning about a file pickled with another protocol (a hand-made pickle is
    refused by ``weights_only`` anyway, and its caller reports that in one line).

    Raises:
        pickle.UnpicklingError: the file holds globals that ``weights_only`` forbids; and the
            errors of a torn or foreign file (``RuntimeError``, ``EOFError``, ...).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True)


def _read_weights(path: Path) -> dict[str, Tensor]:
    try:
        state = load_tensors(path)
    except pickle.UnpicklingError:
        # torch's message advises weights_only=False, which would run the file's code
        raise SeqtagError(f"{path}: refused to load: it holds Python objects, not only tensors") from None
    except Exception as e:  # a torn or foreign file: RuntimeError, EOFError, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise SeqtagError(f"{path}: not a readable weights file ({type(e).__name__}: {first})") from None
    if not isinstance(state, dict):
        raise SeqtagError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    return state


def check_finite(tensors: Mapping[str, Tensor], where: str | Path) -> None:
    """Refuse weights with NaN or infinite values (a diverged run, a damaged file), which would
    load and tag every token with one tag: one line naming the file and the first such tensor.
    ``tensors`` maps names to tensors of any shape (a state dict).

    Raises:
        SeqtagError: ``WHERE: TENSOR holds N NaN or infinite values``.
    """
    for name, tensor in tensors.items():
        if isinstance(tensor, Tensor) and tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise SeqtagError(f"{where}: {name} holds {bad} NaN or infinite value{'s' if bad > 1 else ''}")


def _state_mismatch(state: dict, expected: dict[str, Tensor]) -> str:
    """What keeps ``state`` from loading into a model whose state dict is ``expected`` ("" if nothing)."""
    if "model" in state and "optimizer" in state:
        return "it is a training checkpoint (checkpoints/*.pt), not the weights of a model directory"
    if any(isinstance(k, str) and k.startswith("crf.") for k in state):
        return "its tensor names (crf.*) are those of seqtag before 0.2.0, whose model directories do not load"
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"no {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    if unexpected:
        problems.append(f"unexpected {', '.join(map(str, unexpected[:4]))}{' ...' if len(unexpected) > 4 else ''}")
    for k, v in expected.items():
        if k in state:
            if not isinstance(state[k], Tensor):
                problems.append(f"{k} is a {type(state[k]).__name__}, not a tensor")
            elif state[k].shape != v.shape:
                problems.append(f"{k} has shape {list(state[k].shape)}, expected {list(v.shape)}")
            elif state[k].dtype != v.dtype:  # load_state_dict would cast it: int weights load silently
                problems.append(f"{k} is {str(state[k].dtype).removeprefix('torch.')}, expected {str(v.dtype).removeprefix('torch.')}")
    return "; ".join(problems[:3])


def trained_data_config(model: Path) -> DataConfig | None:
    """The data settings the model directory's run was trained with (config.json's ``data``;
    None for a model saved without them)."""
    try:
        meta = json.loads((model / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    stored = meta.get("data") if isinstance(meta, dict) else None
    if stored is None:
        return None
    try:
        return DataConfig.from_dict(stored)
    except ValueError as e:
        raise SeqtagError(f"{model / CONFIG_FILE}: unreadable data settings ({e})") from None
