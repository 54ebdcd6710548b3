"""Data: gold corpora and prediction streams, vocabularies, word vectors, the string encoder and
batch planner, datasets in memory and memory-mapped Arrow, Hugging Face loading, and what a
:class:`~seqtag.config.DataConfig` names.

Each name below is imported from its module on first use (:func:`seqtag.lazy.attach`), so that
the torch-free modules (``corpus``, ``formats``, ``encoding``) import without torch.
"""

from seqtag.lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "corpus": ["CorpusError", "Sentence", "read_conll", "read_conllu", "read_corpus", "write_conll", "write_conllu"],
    "vocab": ["Vocab", "Vocabularies"],
    "encoding": ["Case", "encode_table", "lowercase_table", "normalize", "plan_batches"],
    "dataset": [
        "Batch", "BucketBatchSampler", "Encoded", "EncodedDataset", "TaggingDataset", "check_encoding", "check_tags",
        "collate", "collate_strings", "encode_strings", "encode_tags", "encode_tokens",
        "lengths_to_mask", "make_loader", "string_rules",
    ],
    "subwords": ["EncoderInputs", "SubwordTokenizer", "Subwords", "encoder_inputs", "plan_windows"],
    "vectors": ["init_embedding", "read_vectors"],
    "tutorial": ["TUTORIAL_MODEL", "TUTORIAL_TRAINING", "sonnet_corpus", "tutorial_corpus"],
})  # fmt: skip
