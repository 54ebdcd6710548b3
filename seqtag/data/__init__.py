"""Data: gold corpora and prediction streams, vocabularies, vectors, the string encoder and batch planner, datasets in memory and Arrow, Hugging Face loading."""
