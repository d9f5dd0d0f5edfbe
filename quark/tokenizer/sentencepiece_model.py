"""Quark's tokenizer: SentencePiece unigram with byte fallback, split digits and exact whitespace.

`decode(encode(text)) == text` byte for byte: no normalisation, no dummy prefix, no collapsing of
spaces, newlines as their own piece, and any byte outside the vocabulary falls back to <0xNN>.
Chat and tool special tokens are *control* symbols: they have ids but are never produced from
user text, so a message that contains "<|assistant|>" cannot forge a turn.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from quark.errors import QuarkError
from quark.home import Home
from quark.tokenizer import chat_template
from quark.tokenizer.chat_template import CHAT_SPECIALS, END

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
# Line ends and tabs are pieces of their own (never merged with words, never byte-fallback); runs of
# spaces are learned as whitespace-only pieces (allow_whitespace_only_pieces), so indentation is cheap.
_WHITESPACE_SYMBOLS = ["\n", "\t", "\r"]
# SentencePiece writes a space as U+2581 and decodes every U+2581 back to a space, so a literal U+2581
# in the text would come back as " ". Quark encodes that character as its three UTF-8 bytes instead.
_SPACE_MARK = "\u2581"
_SPACE_MARK_BYTES = ["<0xE2>", "<0x96>", "<0x81>"]


def train_tokenizer(texts: Iterable[str], model_prefix: Path, vocab_size: int, *,
                    max_sentence_bytes: int = 16384, input_sentence_size: int = 2_000_000,
                    num_threads: int = 2) -> None:
    """Train a unigram model on `texts` and write `<prefix>.model` and `<prefix>.vocab` (a readable
    listing: id order, piece and score per line).

    Documents are cut into chunks of at most `max_sentence_bytes` (SentencePiece's sentence limit);
    chunk boundaries fall on line ends so pieces are learned from whole lines.
    """
    model = io.BytesIO()
    failures: list[BaseException] = []

    def sentences() -> Iterator[str]:
        try:
            yield from _chunks(texts, max_sentence_bytes)
        except BaseException as exc:  # SentencePiece turns it into a bare RuntimeError: keep the original
            failures.append(exc)
            raise

    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences(),
            model_writer=model,
            model_type="unigram",
            vocab_size=vocab_size,
            byte_fallback=True,
            split_digits=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=False,
            allow_whitespace_only_pieces=True,
            split_by_whitespace=True,
            max_sentence_length=max_sentence_bytes,
            input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True,
            character_coverage=0.9995,
            pad_id=0, unk_id=1, bos_id=2, eos_id=3,
            pad_piece=PAD, unk_piece=UNK, bos_piece=BOS, eos_piece=EOS,
            control_symbols=CHAT_SPECIALS,
            user_defined_symbols=_WHITESPACE_SYMBOLS,
            hard_vocab_limit=True,  # the model's embedding is sized from it: exactly vocab_size or an error
            num_threads=num_threads,
            minloglevel=2,
        )
    except RuntimeError as exc:
        if failures:
            raise failures[0] from None
        raise QuarkError(training_error(str(exc), vocab_size)) from None
    model_prefix = Path(model_prefix)
    model_prefix.with_suffix(".model").write_bytes(model.getvalue())
    tok = Tokenizer(model.getvalue())
    model_prefix.with_suffix(".vocab").write_text(
        "".join(f"{_printable(tok.sp.id_to_piece(i))}\t{tok.sp.get_score(i)}\n" for i in range(tok.vocab_size)),
        encoding="utf-8")


def _printable(piece: str) -> str:
    """A piece as it appears in tokenizer.vocab (one line per id): backslashes and unprintable
    characters (the newline, tab and return pieces, form feeds…) written as Python escapes."""
    return "".join(c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii") for c in piece)


def training_error(message: str, vocab_size: int) -> str:
    """One line a user can act on, from SentencePiece's `INTERNAL: file.cc(N) [check] text` errors."""
    if m := re.search(r"smaller than required_chars\. \d+ vs (\d+)", message):
        return (f"vocab size {vocab_size} is too small for this data: it needs at least {m[1]} pieces "
                "(special tokens, byte fallback and the characters it uses)")
    if m := re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", message):
        return (f"vocab size {vocab_size} is too large for this data: it yields at most {m[1]} pieces "
                "(use a smaller --vocab-size or more text)")
    if "!sentences_.empty()" in message:
        return "no text to train the tokenizer on"
    detail = re.sub(r"^\w+: \S+\(\d+\) \[.*?\] ?", "", message.strip().splitlines()[-1])
    return f"tokenizer training failed: {detail or message.strip()}"


def _chunks(texts: Iterable[str], limit: int) -> Iterator[str]:
    for text in texts:
        start = 0
        while start < len(text):
            end = start + limit // 4  # characters; up to 4 bytes each in UTF-8
            if end < len(text):
                newline = text.rfind("\n", start, end)
                end = newline + 1 if newline > start else end
            yield text[start:end]
            start = end


@dataclass
class Tokenizer:
    """A loaded SentencePiece model with Quark's special tokens and chat template."""

    sp: spm.SentencePieceProcessor

    def __init__(self, model: bytes | str | Path) -> None:
        self.sp = spm.SentencePieceProcessor()
        try:
            if isinstance(model, bytes):
                self.sp.LoadFromSerializedProto(model)
            else:
                self.sp.Load(str(model))
        except (OSError, RuntimeError) as exc:
            raise QuarkError(f"cannot load tokenizer {model if not isinstance(model, bytes) else '<bytes>'}: "
                             f"{exc}") from None

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.model"
        if not path.is_file():
            raise QuarkError(f"no tokenizer model at {path}")
        return cls(path)

    @classmethod
    def named(cls, home: Home, name: str) -> Tokenizer:
        """The tokenizer trained into `tokenizers/<name>/` of a home."""
        return cls.load(home.existing(home.tokenizer_dir(name), "tokenizer"))

    @property
    def model_bytes(self) -> bytes:
        """The serialized model: what worker processes load, and what provenance hashes."""
        return self.sp.serialized_model_proto()

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def pad_id(self) -> int:
        return self.sp.pad_id()

    @property
    def bos_id(self) -> int:
        return self.sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self.sp.eos_id()

    def special_id(self, piece: str) -> int:
        return self.sp.piece_to_id(piece)

    @property
    def end_id(self) -> int:
        """<|end|>: closes every chat turn; generation of a reply stops on it."""
        return self.special_id(END)

    def encode(self, text: str) -> list[int]:
        if _SPACE_MARK in text:
            return self._encode_with_space_marks(text, int)
        return self.sp.encode(text)

    def encode_batch(self, texts: Sequence[str], num_threads: int = -1) -> list[list[int]]:
        """Encode many texts at once; SentencePiece spreads the batch over `num_threads` (-1: all cores)."""
        ids = self.sp.encode(list(texts), num_threads=num_threads)
        for i, text in enumerate(texts):
            if _SPACE_MARK in text:
                ids[i] = self.encode(text)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.decode([int(i) for i in ids])

    def pieces(self, text: str) -> list[str]:
        if _SPACE_MARK in text:
            return self._encode_with_space_marks(text, str)
        return self.sp.encode(text, out_type=str)

    def _encode_with_space_marks(self, text: str, out_type: type) -> list:
        """Encode the text between literal U+2581 characters normally and each U+2581 as its bytes,
        which decode to U+2581 itself rather than to a space."""
        mark = _SPACE_MARK_BYTES if out_type is str else [self.sp.piece_to_id(p) for p in _SPACE_MARK_BYTES]
        out: list = []
        for i, part in enumerate(text.split(_SPACE_MARK)):
            if i:
                out += mark
            out += self.sp.encode(part, out_type=out_type)
        return out

    def encode_chat(self, messages: Sequence[dict], *, add_generation_prompt: bool = True) -> list[int]:
        """The chat template as ids (see quark.tokenizer.chat_template)."""
        return chat_template.encode_chat(self, messages, add_generation_prompt=add_generation_prompt)

    def encode_turn(self, message: dict) -> list[int]:
        """One message of the chat template as ids: <|role|> content <|end|>."""
        return chat_template.encode_turn(self, message)

    def metadata(self) -> dict:
        return {"vocab_size": self.vocab_size, "pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id,
                "end_id": self.end_id, "specials": {p: self.special_id(p) for p in CHAT_SPECIALS}}


def save_meta(folder: Path, tok: Tokenizer, extra: dict) -> None:
    (Path(folder) / "meta.json").write_text(json.dumps({**tok.metadata(), **extra}, indent=2))
