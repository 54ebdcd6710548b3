"""predict's streams: every token the reader gives is written so that it reads back, or refused in one line."""

import io
import json

import pytest

from seqtag.data.corpus import CorpusError, read_conll, read_conllu
from seqtag.data.formats import Writer, read_items

ODD = ["a\u2028b", "a\x00b", "a b", "#", "a\rb", "a\u0085b", "x" * 5000, "ü"]


def _write(fmt: str, tokens: list[str]) -> str:
    line = json.dumps({"tokens": tokens}) + "\n"
    (item,) = read_items(io.BytesIO(line.encode()), "in.jsonl", "jsonl")
    return Writer(fmt, "jsonl", 3 if fmt == "conllu" else None)(item, (["T"] * len(tokens), None, None), "in.jsonl")


@pytest.mark.parametrize("fmt", ["text", "conll", "conllu"])
def test_odd_tokens_written_as_columns_read_back(fmt, tmp_path):
    path = tmp_path / ("out.conllu" if fmt == "conllu" else "out.conll")
    path.write_text(_write(fmt, ODD), encoding="utf-8")
    (sentence,) = read_conllu(path) if fmt == "conllu" else read_conll(path)
    assert sentence.tokens == ODD and sentence.tags == ["T"] * len(ODD)


@pytest.mark.parametrize("fmt", ["text", "conll", "conllu"])
@pytest.mark.parametrize("token", ["a\tb", "a\nb", ""])
def test_a_token_a_column_format_cannot_carry_is_one_line(fmt, token):
    with pytest.raises(CorpusError, match=rf"in.jsonl:1: token 1 \(.*\) cannot be a {fmt} field .*--output-format jsonl") as e:
        _write(fmt, ["The", token])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("token", ["a\tb", "a\nb", "", "a\u2028b"])
def test_json_lines_carry_every_token(token):
    out = _write("jsonl", ["The", token])
    (item,) = read_items(io.BytesIO(out.encode()), "out.jsonl", "jsonl")
    assert item.tokens == ["The", token] and item.obj["tags"] == ["T", "T"]


@pytest.mark.parametrize("line", [b'{"tokens": ["a", "b\\ud800"]}\n', b'{"tokens": ["a"], "id": "\\udfff"}\n'])
def test_a_lone_surrogate_in_json_lines_is_refused_where_it_is_read(line):
    with pytest.raises(CorpusError, match=r"in.jsonl:2: a lone surrogate .* which UTF-8 cannot carry"):
        list(read_items(io.BytesIO(b'{"tokens": ["ok"]}\n' + line), "in.jsonl", "jsonl"))


def test_a_surrogate_pair_is_one_character():
    (item,) = read_items(io.BytesIO(b'{"tokens": ["\\ud83d\\ude42"]}\n'), "in.jsonl", "jsonl")
    assert item.tokens == ["\U0001f642"]
