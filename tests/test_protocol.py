"""Protocol v1 messages and validation (stream/protocol.py), without a server."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from llmcodec.stream.protocol import (DECODE_PATH, ERRORS, STREAM_PATH, Close, End, ProtocolError, Ready, Start, Timing,
                             Tokens, close_reason, decode_pcm, parse_server_message, parse_start, parse_text,
                             parse_tokens)

TPB, SIZES = (1, 2, 4), (4096, 49152, 49152)


def code_of(fn, *args, **kwargs) -> str:
    with pytest.raises(ProtocolError) as e:
        fn(*args, **kwargs)
    assert e.value.message and e.value.close_code == int(ERRORS[e.value.code][0])
    return e.value.code


def test_start_defaults_and_round_trip():
    s = parse_start(parse_text('{"type": "start", "sample_rate": 48000}'))
    assert s == Start(48000, "pcm_f32le", 1, ("tokens",))
    again = parse_start(json.loads(Start(44100, "pcm_s16le", 2, ("tokens", "audio")).to_json()))
    assert again == Start(44100, "pcm_s16le", 2, ("tokens", "audio"))
    assert again.frame_bytes == 4
    assert parse_start({"type": "start"}, DECODE_PATH).returns == ("audio",)


@pytest.mark.parametrize("text, code", [
    ("not json", "bad_json"),
    ("[1, 2]", "bad_message"),
    ('{"sample_rate": 16000}', "bad_message"),
    ('{"type": 3}', "bad_message"),
    ('{"type": "hello"}', "unknown_type"),
])
def test_parse_text_errors(text, code):
    assert code_of(parse_text, text) == code


@pytest.mark.parametrize("fields, code", [
    ({}, "bad_start"),
    ({"sample_rate": "16000"}, "bad_start"),
    ({"sample_rate": 16000.0}, "bad_start"),
    ({"sample_rate": True}, "bad_start"),
    ({"sample_rate": 4000}, "unsupported_rate"),
    ({"sample_rate": 1_000_000}, "unsupported_rate"),
    ({"sample_rate": 16000, "format": "mp3"}, "unsupported_format"),
    ({"sample_rate": 16000, "channels": 0}, "unsupported_channels"),
    ({"sample_rate": 16000, "channels": 9}, "unsupported_channels"),
    ({"sample_rate": 16000, "return": "tokens"}, "bad_start"),
    ({"sample_rate": 16000, "return": []}, "bad_start"),
    ({"sample_rate": 16000, "return": ["video"]}, "unsupported_return"),
    ({"sample_rate": 16000, "sample_rte": 1}, "bad_start"),
])
def test_start_errors(fields, code):
    assert code_of(parse_start, {"type": "start", **fields}) == code


def test_start_text_needs_a_vocabulary_and_decode_takes_no_audio_fields():
    assert code_of(parse_start, {"type": "start", "sample_rate": 16000, "return": ["text"]},
                   vocabulary=False) == "unsupported_return"
    assert code_of(parse_start, {"type": "start", "sample_rate": 16000}, DECODE_PATH) == "bad_start"
    assert code_of(parse_start, {"type": "start", "return": ["tokens"]}, DECODE_PATH) == "unsupported_return"


def test_decode_pcm_formats_channels_and_errors():
    x = np.array([[0.5, -0.5], [0.25, 0.75]], np.float32)
    mono = decode_pcm(x.astype("<f4").tobytes(), Start(16000, "pcm_f32le", 2))
    np.testing.assert_array_equal(mono, x.mean(axis=1))
    s16 = np.array([-32768, 0, 16384, 32767], np.int16)
    got = decode_pcm(s16.astype("<i2").tobytes(), Start(16000, "pcm_s16le", 1))
    np.testing.assert_array_equal(got, s16.astype(np.float32) / 32768)
    assert decode_pcm(b"", Start()).size == 0
    assert code_of(decode_pcm, b"\x00\x01\x02", Start(16000, "pcm_s16le", 1)) == "bad_audio"
    assert code_of(decode_pcm, b"\x00" * 6, Start(16000, "pcm_f32le", 1)) == "bad_audio"
    assert code_of(decode_pcm, b"\x00" * 4, Start(16000, "pcm_s16le", 4)) == "bad_audio"  # 4 ch x 2 B = 8
    for bad in (np.nan, np.inf, -np.inf):
        data = np.array([0.1, bad], "<f4").tobytes()
        assert code_of(decode_pcm, data, Start()) == "non_finite"


def test_parse_tokens_shapes_types_and_ranges():
    ok = {"type": "tokens", "codes": [[1, 2], [3, 4, 5, 6], [7, 8, 9, 10, 11, 12, 13, 14]]}
    codes = parse_tokens(ok, TPB, SIZES)
    assert [c.tolist() for c in codes] == ok["codes"] and all(c.dtype == np.int64 for c in codes)
    bad = [
        {"type": "tokens"},
        {"type": "tokens", "codes": [[1], [2, 3]]},
        {"type": "tokens", "codes": [[1], [2, 3], [4, 5, 6]]},
        {"type": "tokens", "codes": [[1], [2, 3, 4, 5], [4, 5, 6, 7]]},
        {"type": "tokens", "codes": [[1], [2, 3], [4, 5, 6, 49152]]},
        {"type": "tokens", "codes": [[-1], [2, 3], [4, 5, 6, 7]]},
        {"type": "tokens", "codes": [[1.5], [2, 3], [4, 5, 6, 7]]},
        {"type": "tokens", "codes": [[True], [2, 3], [4, 5, 6, 7]]},
        {"type": "tokens", "codes": [["a"], [2, 3], [4, 5, 6, 7]]},
        {"type": "tokens", "codes": "1 2 3"},
        {"type": "tokens", "codes": [[], [], []]},
        {"type": "tokens", "levels": [[1], [2, 3], [4, 5, 6, 7]]},  # no vocabulary given
    ]
    for d in bad:
        assert code_of(parse_tokens, d, TPB, SIZES) == "bad_tokens", d


def test_parse_tokens_levels_and_text_with_the_vocabulary():
    from llmcodec.vocab import Vocabulary
    vocab = Vocabulary.default()
    codes = [np.array([5, 9]), np.array([100, 200, 300, 400]), np.arange(1000, 1008)]
    levels = [vocab.codes_to_token_ids(l, c) for l, c in enumerate(codes)]
    text = [vocab.codes_to_text(l, c) for l, c in enumerate(codes)]
    for key, body in (("levels", levels), ("text", text)):
        got = parse_tokens({"type": "tokens", key: body}, TPB, SIZES, vocab)
        assert all(np.array_equal(g, c) for g, c in zip(got, codes)), key
    bad_word = {"type": "tokens", "text": [" notawordxyz", text[1], text[2]]}
    assert code_of(parse_tokens, bad_word, TPB, SIZES, vocab) == "bad_tokens"


def test_server_messages_round_trip():
    t = Timing(46080, 4.12345, 19.8, 24.6, 3)
    tok = Tokens(7, ((1,), (2, 3), (4, 5, 6, 7)), None, (" a", "b c", "d e f g"), t, audio=True)
    m = parse_server_message(tok.to_json())
    assert m.seq == 7 and m.codes == tok.codes and m.levels is None and m.text == tok.text and m.audio
    assert m.timing.queue_ms == pytest.approx(4.123) and m.timing.batch == 3
    r = Ready("s1", STREAM_PATH, "small", "torch", 16000, 1920, TPB, SIZES, "SmolLM2-135M-Instruct",
              48000, "pcm_s16le", 1, ("tokens",))
    assert parse_server_message(r.to_json()) == r and r.block_seconds == pytest.approx(0.12)
    assert parse_server_message(End(5).to_json()) == End(5)
    e = parse_server_message(ProtocolError("bad_json", "x").to_json())
    assert (e.code, e.message) == ("bad_json", "x")
    with pytest.raises(ValueError):
        parse_server_message('{"type": "surprise"}')


def test_error_codes_close_codes_and_docs_agree():
    assert all(isinstance(c, Close) and 1000 <= c < 5000 for c, _ in ERRORS.values())
    with pytest.raises(KeyError):
        ProtocolError("no_such_code", "x")
    doc = (Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md").read_text()
    table = dict(re.findall(r"^\| `([a-z_]+)` \| (\d{4}) \|", doc, re.M))
    assert table == {k: str(int(c)) for k, (c, _) in ERRORS.items()}
    assert len(close_reason("é" * 200).encode()) <= 123
