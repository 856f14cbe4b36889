import pytest
import torch

import clip
from clip.tokenizer import default_tokenizer

# Ids from OpenAI's clip.tokenize (the known answers).
KNOWN = {
    "a photo of abseiling": [49406, 320, 1125, 539, 596, 567, 3299, 49407],
    "Apply Eye Makeup": [49406, 4356, 3272, 5853, 49407],
    "passing American football (in game)": [49406, 6589, 2151, 1882, 263, 530, 1063, 264, 49407],
}


@pytest.mark.parametrize("text", list(KNOWN))
def test_known_token_ids(text):
    tokens = clip.tokenize(text)
    expected = KNOWN[text]
    assert tokens.shape == (1, 77) and tokens.dtype == torch.long
    assert tokens[0, :len(expected)].tolist() == expected
    assert tokens[0, len(expected):].eq(0).all()


def test_batch_and_context_length():
    tokens = clip.tokenize(list(KNOWN), context_length=16)
    assert tokens.shape == (3, 16)
    for row, expected in zip(tokens, KNOWN.values(), strict=True):
        assert row[:len(expected)].tolist() == expected


def test_vocabulary():
    tokenizer = default_tokenizer()
    assert tokenizer.vocab_size == 49408
    assert (tokenizer.sot_token, tokenizer.eot_token) == (49406, 49407)
    assert default_tokenizer() is tokenizer  # the vocabulary is read once


def test_cleaning_matches_openai_rules():
    # HTML entities are unescaped, whitespace collapsed and case folded before BPE.
    assert clip.tokenize("A  PHOTO\tof &amp; abseiling").tolist() == clip.tokenize("a photo of & abseiling").tolist()
    # Digits are split one by one; contractions are their own tokens.
    ids = clip.tokenize("it's 42")[0].tolist()
    single = {text: clip.tokenize(text)[0, 1].item() for text in ("it", "'s", "4", "2")}
    assert ids[:6] == [49406, single["it"], single["'s"], single["4"], single["2"], 49407]


def test_too_long_raises_unless_truncated():
    text = "abseiling " * 100
    with pytest.raises(ValueError, match="context length 77"):
        clip.tokenize(text)
    tokens = clip.tokenize(text, truncate=True)
    assert tokens.shape == (1, 77)
    assert tokens[0, 0] == 49406 and tokens[0, -1] == 49407
    # The end-of-text token is where CLIP reads the text embedding: it must be the row's maximum.
    assert tokens[0].argmax() == 76


def test_exactly_full_context_is_accepted():
    # 75 single-token words + start + end = 77.
    tokens = clip.tokenize("a " * 75)
    assert tokens[0, -1] == 49407 and tokens[0, 1:76].eq(320).all()


@pytest.mark.parametrize("text", ["a photo of abseiling", "passing american football ( in game )", "naïve café 3 pm"])
def test_decode_round_trip(text):
    assert clip.decode(clip.tokenize(text)[0]) == text


def test_unicode_and_empty_text():
    empty = clip.tokenize("")
    assert empty[0, :2].tolist() == [49406, 49407] and empty[0, 2:].eq(0).all()
    ids = clip.tokenize("日本 🎉")[0]
    assert (ids > 0).sum() > 3 and ids.max() == 49407
