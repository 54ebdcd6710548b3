"""A pretrained transformer under the tagger: windows of subwords in, one vector per word out.

:class:`SubwordEncoder` wraps a Hugging Face ``AutoModel``. It runs every window of a batch
(:func:`seqtag.data.subwords.encoder_inputs`) as one padded batch, optionally mixes the last hidden
layers (:class:`ScalarMix`), takes each subword's vector from the window chosen for it
(:func:`gather_windows`) and pools each word's subwords into one vector (:func:`pool_words`:
its first, its last, or their mean).

:func:`load_encoder` loads a model and its tokenizer from a local directory or the local
Hugging Face cache, never from the network; :func:`save_encoder` writes the directory that
:func:`load_encoder` reloads offline: transformers' ``config.json`` and ``model.safetensors``,
and the tokenizer's ``tokenizer.json`` and ``subwords.json`` (:mod:`seqtag.data.subwords`).

transformers is imported only by the loading functions, so this module imports without it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from seqtag.config import POOLINGS
from seqtag.data.dataset import SubwordBatch
from seqtag.data.subwords import SUBWORDS_FILE, TOKENIZER_FILE, EncoderInputs, SubwordTokenizer
from seqtag.errors import SeqtagError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

HF_CONFIG_FILE, HF_WEIGHTS_FILE = "config.json", "model.safetensors"
# model types whose position ids start after the padding id (fairseq's convention), so that
# max_position_embeddings counts padding_idx + 1 positions that a window cannot use
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm", "data2vec-text")


def import_transformers() -> Any:
    """The ``transformers`` module.

    Raises:
        SeqtagError: not installed (one line saying how to install it).
    """
    try:
        import transformers
    except ImportError:
        raise SeqtagError("a pretrained encoder needs transformers: pip install 'seqtag[transformers]'") from None
    return transformers


def gather_windows(hidden: Tensor, source: Tensor) -> Tensor:
    """Each subword's vector, from the window position chosen for it.

    Args:
        hidden: ``(n_windows, width, dim)``, the encoder's output for every window.
        source: ``(batch, max_subwords)`` int64, rows of ``hidden`` flattened to
            ``(n_windows * width, dim)`` (:attr:`seqtag.data.subwords.EncoderInputs.source`).

    Returns:
        ``(batch, max_subwords, dim)``; at padding, the vector of row 0.
    """
    dim = hidden.size(-1)
    flat = hidden.reshape(-1, dim)
    # shape: (batch * max_subwords, dim) -> (batch, max_subwords, dim)
    return flat.index_select(0, source.reshape(-1)).reshape(source.size(0), source.size(1), dim)


def pool_words(subwords: Tensor, starts: Tensor, ends: Tensor, pooling: str) -> Tensor:
    """Each word's vector from its subwords' vectors.

    Args:
        subwords: ``(batch, max_subwords, dim)``.
        starts, ends: ``(batch, max_words)`` int64, each word's subwords ``[start, end)``;
            ``start == end`` at padding.
        pooling: ``"first"``, ``"last"`` (the vector of that subword) or ``"mean"``.

    Returns:
        ``(batch, max_words, dim)``, zero at padding.

    >>> x = torch.arange(6.0).view(1, 3, 2)
    >>> pool_words(x, torch.tensor([[0, 1, 0]]), torch.tensor([[1, 3, 0]]), "mean")
    tensor([[[0., 1.],
             [3., 4.],
             [0., 0.]]])
    """
    real = (ends > starts).unsqueeze(-1)  # shape: (batch, max_words, 1)
    if pooling == "mean":
        positions = torch.arange(subwords.size(1), device=subwords.device)
        # shape: (batch, max_words, max_subwords): 1 / word length where the subword is the word's
        member = (positions >= starts.unsqueeze(-1)) & (positions < ends.unsqueeze(-1))
        counts = (ends - starts).clamp(min=1).unsqueeze(-1).to(subwords.dtype)
        return torch.bmm(member.to(subwords.dtype) / counts, subwords)
    if pooling == "first":
        index = starts
    elif pooling == "last":
        index = (ends - 1).clamp(min=0)
    else:
        raise ValueError(f"expected pooling in {POOLINGS}, got {pooling!r}")
    index = index.unsqueeze(-1).expand(-1, -1, subwords.size(-1))
    return torch.gather(subwords, 1, index) * real.to(subwords.dtype)


class ScalarMix(nn.Module):
    """A learned weighted sum of ``n`` hidden layers: ``gamma * sum_i softmax(w)_i * layer_i``
    (ELMo's scalar mix, Peters et al. 2018); starts as their mean.

    Args:
        n: layers mixed.
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        if n < 1:
            raise ValueError(f"expected n >= 1, got {n}")
        self.weights = nn.Parameter(torch.zeros(n))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, layers: Tensor) -> Tensor:
        """``layers`` ``(n, *shape)`` -> ``(*shape)``."""
        w = torch.softmax(self.weights, 0).to(layers.dtype)
        w = w.reshape([-1] + [1] * (layers.dim() - 1))
        return self.gamma.to(layers.dtype) * (w * layers).sum(0)


class SubwordEncoder(nn.Module):
    """A transformer encoder giving one vector per word.

    Args:
        model: a Hugging Face encoder (``AutoModel``: BERT, RoBERTa, ...).
        pooling: ``"first"``, ``"mean"`` or ``"last"`` subword of each word (:data:`POOLINGS`).
        layers: 1 for the last hidden layer, ``n > 1`` for a :class:`ScalarMix` of the last ``n``.
        frozen: the transformer's weights are not trained (run without gradients, in eval mode;
            the mix still learns).

    Attributes:
        dim: the size of a word vector (the model's hidden size).
        mix: the :class:`ScalarMix`, or None (``layers == 1``).

    Shapes, for ``B`` sentences (:class:`seqtag.data.subwords.EncoderInputs` as int64 tensors):
    ``window_ids``, ``window_mask`` ``(n_windows, width)``, ``source`` ``(B, max_subwords)``,
    ``word_starts``, ``word_ends`` ``(B, max_words)``; the result ``(B, max_words, dim)``.
    """

    def __init__(self, model: PreTrainedModel, pooling: str = "first", layers: int = 1, frozen: bool = False) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"expected pooling in {POOLINGS}, got {pooling!r}")
        n_hidden = int(model.config.num_hidden_layers)
        if not 1 <= layers <= n_hidden + 1:  # + 1: the embeddings' output
            raise ValueError(f"expected 1 <= layers <= {n_hidden + 1}, got {layers}")
        self.model = model
        self.pooling = pooling
        self.layers = layers
        self.frozen = frozen
        self.dim = int(model.config.hidden_size)
        self.mix = ScalarMix(layers) if layers > 1 else None
        if frozen:
            model.requires_grad_(False)
            model.eval()

    def train(self, mode: bool = True) -> SubwordEncoder:
        super().train(mode)
        if self.frozen:
            self.model.eval()  # no dropout in a frozen encoder
        return self

    def forward(self, window_ids: Tensor, window_mask: Tensor, source: Tensor, word_starts: Tensor, word_ends: Tensor) -> Tensor:
        """Word vectors ``(B, max_words, dim)``, zero at padding (shapes in the class docstring)."""
        hidden = self.encode_windows(window_ids, window_mask)
        return pool_words(gather_windows(hidden, source), word_starts, word_ends, self.pooling)

    def encode_windows(self, window_ids: Tensor, window_mask: Tensor) -> Tensor:
        """The (mixed) hidden states of every window, ``(n_windows, width, dim)``."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            out = self.model(input_ids=window_ids, attention_mask=window_mask, output_hidden_states=self.mix is not None)
        if self.mix is None:
            return out.last_hidden_state
        return self.mix(torch.stack(out.hidden_states[-self.layers :]))

    def encode(self, inputs: EncoderInputs) -> Tensor:
        """:meth:`forward` on an :class:`~seqtag.data.subwords.EncoderInputs` (lists), on the
        module's device: ``(B, max_words, dim)``."""
        device = self.mix.weights.device if self.mix is not None else next(self.model.parameters()).device
        return self(*SubwordBatch.from_inputs(inputs).to(device))


def max_window_size(config: Any) -> int | None:
    """The most tokens a window can hold, special tokens included, from a transformers config
    (``max_position_embeddings``, less the offset of RoBERTa-style position ids); None when the
    config does not say."""
    n = getattr(config, "max_position_embeddings", None)
    if n is None:
        return None
    if getattr(config, "model_type", "") in _OFFSET_POSITIONS:
        n -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    return int(n)


def load_encoder(name_or_path: str | os.PathLike, attn_implementation: str = "sdpa") -> tuple[PreTrainedModel, SubwordTokenizer]:
    """A pretrained encoder (float32, eval mode) and its tokenizer, from a local directory or
    the local Hugging Face cache; never from the network (``local_files_only`` on every call,
    whatever ``HF_HUB_OFFLINE`` says), and no code from the model's files is run.

    A directory that :func:`save_encoder` wrote is read with its ``subwords.json`` and
    ``model.safetensors``; any other model's tokenizer must be a fast one (a ``tokenizer.json``).

    Args:
        name_or_path: a directory, or a model name already in the Hugging Face cache.
        attn_implementation: transformers' attention (``"sdpa"``: fused; a model that does
            not support it falls back to ``"eager"``).

    Raises:
        SeqtagError: transformers is missing, the name is not in the cache, the directory is
            not a model, or its tokenizer is not a fast one.
    """
    transformers = import_transformers()
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        name = str(path)
    saved = path.is_dir() and (path / SUBWORDS_FILE).is_file()
    if path.is_dir():
        if not (path / HF_CONFIG_FILE).is_file():
            raise SeqtagError(f"{name}: not a transformers model directory (no {HF_CONFIG_FILE})")
        where = name
    elif path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or path.exists():
        raise SeqtagError(f"{name}: no such encoder directory")
    else:
        where = f"encoder {name!r}"
    options: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    try:
        config = transformers.AutoConfig.from_pretrained(name, **options)
    except (OSError, ValueError) as e:
        if path.is_dir():
            raise SeqtagError(f"{name}: not a transformers model directory ({_first_line(e)})") from None
        raise SeqtagError(
            f"{where} is neither a local directory nor in the local Hugging Face cache, and seqtag "
            f"never downloads: fetch it first (hf download {name}) or give a local directory"
        ) from None
    if saved:
        options["use_safetensors"] = True  # what save_encoder wrote: nothing pickled
    auto = transformers.AutoModel
    options["output_loading_info"] = True
    # a torn safetensors file raises the library's own error type
    errors = (OSError, ValueError, RuntimeError, getattr(import_module("safetensors"), "SafetensorError", OSError))
    with _quiet(transformers):
        try:
            try:
                model, info = auto.from_pretrained(
                    name, config=config, attn_implementation=attn_implementation, **options
                )
            except ValueError as e:  # an architecture without SDPA support
                if "attn_implementation" not in str(e) and "scaled_dot_product_attention" not in str(e):
                    raise
                model, info = auto.from_pretrained(name, config=config, attn_implementation="eager", **options)
        except errors as e:
            raise SeqtagError(f"{where}: cannot load its weights ({_first_line(e)})") from None
    # transformers re-initializes weights of another shape (and, in a model name's files, those it
    # lacks, such as a pooler): a weight of another shape is another model; a directory that
    # save_encoder wrote must hold every weight
    wrong = [str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys", ())]
    if saved:
        wrong += [str(k) for k in (*info.get("missing_keys", ()), *info.get("unexpected_keys", ()))]
    if wrong:
        raise SeqtagError(f"{where}: cannot load its weights (they do not fit its config.json: {', '.join(sorted(wrong)[:3])})")
    model = model.float().eval()
    tokenizer = SubwordTokenizer.load(path) if saved else _fast_tokenizer(transformers, name, where, options)
    return model, tokenizer


def _fast_tokenizer(transformers: Any, name: str, where: str, options: dict[str, Any]) -> SubwordTokenizer:
    """The model's tokenizer as a :class:`SubwordTokenizer`, which must be a fast one; byte-level
    BPE tokenizers get a space before each word, as transformers requires for words."""
    try:
        tok = transformers.AutoTokenizer.from_pretrained(name, add_prefix_space=True, **options)
    except (OSError, ValueError, TypeError) as e:
        raise SeqtagError(f"{where}: cannot load its tokenizer ({_first_line(e)})") from None
    if not getattr(tok, "is_fast", False) or getattr(tok, "backend_tokenizer", None) is None:
        raise SeqtagError(f"{where}: its tokenizer is not a fast one (seqtag needs a {TOKENIZER_FILE})")
    if tok.unk_token is None:
        raise SeqtagError(f"{where}: its tokenizer has no unknown token")
    return SubwordTokenizer(tok.backend_tokenizer, tok.unk_token, tok.pad_token or tok.unk_token)


def save_encoder(model: PreTrainedModel, tokenizer: SubwordTokenizer, directory: str | os.PathLike) -> None:
    """Write ``model`` and ``tokenizer`` into ``directory`` (created if needed) as
    :func:`load_encoder` reads them offline: ``config.json`` and ``model.safetensors``
    (``save_pretrained``: safetensors, nothing pickled), ``tokenizer.json`` and ``subwords.json``.

    transformers writes into a temporary directory inside ``directory``; its files are then
    renamed into place. The directory must not be a seqtag model directory itself (both have a
    ``config.json``): use a folder inside it.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".encoder-", dir=directory))
    try:
        with _quiet(import_transformers()):
            model.save_pretrained(scratch)
        for item in scratch.iterdir():
            os.replace(item, directory / item.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    tokenizer.save(directory)


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """transformers' progress bars off while seqtag loads or saves (a tagger is one model)."""
    hf_logging = transformers.utils.logging
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
