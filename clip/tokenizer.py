"""CLIP's byte-level BPE tokenizer: the same ids as OpenAI's ``clip.tokenize``.

Text is cleaned (ftfy, HTML unescape, whitespace collapsed, lower-cased), split into words with
OpenAI's regular expression, each word's UTF-8 bytes mapped to printable characters, and the BPE
merges of ``bpe_simple_vocab_16e6.txt.gz`` applied in rank order. A word's last symbol carries the
end-of-word marker ``</w>``. Ids: 256 byte symbols, the same 256 with ``</w>``, 48,894 merges, then
``<|startoftext|>`` 49406 and ``<|endoftext|>`` 49407 (vocabulary size 49,408).
"""

import gzip
import html
from functools import cache, lru_cache
from pathlib import Path

import ftfy
import regex
import torch

VOCAB_PATH = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
# CLIP uses the first 49152 - 256 - 2 merges of the file (its first line is a version header).
NUM_MERGES = 49152 - 256 - 2
END_OF_WORD = "</w>"

# OpenAI's word splitter: the special tokens, English contractions, runs of letters, single digits,
# and runs of other non-space characters.
WORD_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


@cache
def byte_to_symbol() -> dict[int, str]:
    """A reversible map from the 256 byte values to printable unicode characters.

    Printable Latin-1 bytes stand for themselves; the others (control characters, space, ...) are
    shifted to code points from 256 on, so that no BPE symbol is whitespace or a control character.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shifted)
            shifted += 1
    return mapping


def clean(text: str) -> str:
    """OpenAI's normalisation: fix mojibake, unescape HTML (twice), collapse whitespace, lower-case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return regex.sub(r"\s+", " ", text).strip().lower()


class Tokenizer:
    """Encodes text to CLIP token ids and decodes them back. Build once: use :func:`default_tokenizer`."""

    def __init__(self, vocab_path: Path = VOCAB_PATH):
        with gzip.open(vocab_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]
        if len(merges) != NUM_MERGES:
            raise ValueError(f"{vocab_path}: expected {NUM_MERGES} BPE merges, found {len(merges)}")
        symbols = list(byte_to_symbol().values())
        vocab = symbols + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in merges]
        vocab += [START_OF_TEXT, END_OF_TEXT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = dict(enumerate(vocab))
        self.merge_rank = {pair: rank for rank, pair in enumerate(merges)}
        self.symbol_to_byte = {s: b for b, s in byte_to_symbol().items()}
        self.sot_token = self.encoder[START_OF_TEXT]
        self.eot_token = self.encoder[END_OF_TEXT]
        # The same words recur across class names and prompts: remember their BPE.
        self.bpe = lru_cache(maxsize=100_000)(self._bpe)

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def _bpe(self, word: str) -> tuple[str, ...]:
        """Split one word (already mapped to byte symbols) into BPE tokens."""
        if word in (START_OF_TEXT, END_OF_TEXT):
            return (word,)
        parts = [*word[:-1], word[-1] + END_OF_WORD]
        while len(parts) > 1:
            # Merge the adjacent pair that was learnt earliest; stop when no pair is a known merge.
            pair = min(zip(parts[:-1], parts[1:], strict=True), key=lambda p: self.merge_rank.get(p, NUM_MERGES))
            if pair not in self.merge_rank:
                break
            first, second = pair
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(parts)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without the start/end tokens."""
        to_symbol = byte_to_symbol()
        ids = []
        for word in WORD_PATTERN.findall(clean(text)):
            symbols = "".join(to_symbol[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[token] for token in self.bpe(symbols))
        return ids

    def decode(self, ids) -> str:
        """Text of token ids (start/end tokens and padding zeros after the end dropped); words are
        separated by single spaces, as the end-of-word markers say."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        tokens = []
        for i in ids:
            if i == self.eot_token:
                break
            if i != self.sot_token:
                tokens.append(self.decoder[int(i)])
        # "</w>" is made of printable ASCII symbols, so it survives the byte mapping and is replaced after.
        data = bytearray(self.symbol_to_byte[c] for c in "".join(tokens))
        return data.decode("utf-8", errors="replace").replace(END_OF_WORD, " ").strip()


@cache
def default_tokenizer() -> Tokenizer:
    """The tokenizer of the shipped vocabulary, loaded once per process."""
    return Tokenizer()


def tokenize(texts: str | list[str], context_length: int = 77, truncate: bool = False) -> torch.LongTensor:
    """``[N, context_length]`` token ids: <|startoftext|>, the text's BPE ids, <|endoftext|>, zeros.

    A text longer than the context is an error unless ``truncate``; then it is cut and its last token
    set to <|endoftext|>, which is where CLIP's text encoder reads its embedding.
    """
    if isinstance(texts, str):
        texts = [texts]
    tokenizer = default_tokenizer()
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [tokenizer.sot_token, *tokenizer.encode(text), tokenizer.eot_token]
        if len(ids) > context_length:
            if not truncate:
                raise ValueError(f"text has {len(ids)} tokens (with start and end), more than the context "
                                 f"length {context_length}; shorten it or pass truncate=True: {text[:60]!r}")
            ids = ids[:context_length]
            ids[-1] = tokenizer.eot_token
        result[row, :len(ids)] = torch.tensor(ids)
    return result


def decode(ids) -> str:
    """Text of one row of token ids (see :meth:`Tokenizer.decode`)."""
    return default_tokenizer().decode(ids)
