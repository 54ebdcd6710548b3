"""Random pretrained-encoder stand-ins for tests and benchmarks: built offline, saved as a model
name's files would be (``save_pretrained``), loaded by path like any encoder directory.

Needs the ``transformers`` extra; nothing else in seqtag imports this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def random_bert(directory: str | Path, text: Iterable[str], *, vocab_size: int = 160, hidden_size: int = 24,
                num_layers: int = 2, num_heads: int = 2, intermediate_size: int = 37, max_positions: int = 128,
                seed: int = 11) -> Path:  # fmt: skip
    """A BERT with random weights and a lowercasing WordPiece tokenizer trained on ``text`` (at
    most ``vocab_size`` pieces), saved in ``directory``. The defaults make a tiny one for tests;
    ``vocab_size=30522, hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536,
    max_positions=512`` has all-MiniLM-L6-v2's shape (its cost, not its accuracy).

    The same arguments save the same weights and the same set of pieces (the trainer may number
    pieces of equal frequency differently from one process to the next).
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece.train_from_iterator(text, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special))
    tokenizer = BertTokenizerFast(vocab=wordpiece.get_vocab())
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=num_heads, intermediate_size=intermediate_size,
                        max_position_embeddings=max_positions)  # fmt: skip
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)
