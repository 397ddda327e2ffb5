"""Continuous and discrete value tokens (SPEC section 4): ranges, formula, inverse, strictness."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from trajcorpus.errors import TokenizeError
from trajcorpus.tokenizers import (
    CONTINUOUS_OFFSET,
    MU,
    NUM_BINS,
    SEPARATOR,
    TEXT_VOCAB_SIZE,
    M,
    bin_centres,
    decode_continuous,
    encode_continuous,
    encode_discrete,
    inverse_mu_law,
    mu_law_transform,
)
from trajcorpus.tokenizers.discrete import decode_discrete

HALF_BIN = 1.0 / NUM_BINS  # half of a bin's width 2 / 1024
FLOAT_SLACK = 1e-6  # float32 rounding of the decoded value


def F(x):  # the SPEC's mu-law, written independently in float64
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        return np.sign(x) * np.log(np.abs(x) * MU + 1.0) / np.log(M * MU + 1.0)


def spec_bins(y):
    """The SPEC's bin of an already-companded value, in float64."""
    y = np.clip(np.asarray(y, dtype=np.float64), -1.0, 1.0)
    return np.minimum(np.floor((y + 1.0) / 2.0 * NUM_BINS), NUM_BINS - 1).astype(np.int64)


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
any_float = st.floats(allow_nan=False, allow_infinity=True, width=64)
in_mu_range = st.floats(min_value=-float(M), max_value=float(M), allow_nan=False)
in_unit = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)
props = settings(max_examples=300, deadline=None)


def test_scheme_constants_match_the_spec():
    """Every constant of the scheme as a literal (SPEC 4 and 6): mutmut does not mutate
    module-level assignments, so this is what guards scheme.py (docs/mutation-testing.md)."""
    from trajcorpus.tokenizers import scheme

    assert (TEXT_VOCAB_SIZE, NUM_BINS, CONTINUOUS_OFFSET, SEPARATOR, MU, M) == (
        32000, 1024, 32000, 33024, 100, 256)
    assert (scheme.DISCRETE_LIMIT, scheme.VOCAB_SIZE, scheme.PATCH, scheme.PATCH_SLOT,
            scheme.PAD_TOKEN, scheme.NO_POSITION, scheme.PATCH_NORM_DIVISOR) == (
        1024, 33025, 16, -1, 0, -1, 4.0)
    assert [(m.name, int(m)) for m in scheme.Modality] == [
        ("PAD", 0), ("TEXT", 1), ("IMAGE", 2), ("DISCRETE", 3), ("CONTINUOUS", 4),
        ("SEPARATOR", 5), ("ACTION", 6)]
    assert scheme.MODALITY_NAMES == ("pad", "text", "image", "discrete", "continuous",
                                     "separator", "action")


@props
@given(hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=6), elements=any_float),
       st.booleans())
def test_every_continuous_token_is_in_range(x, mu_law):
    t = encode_continuous(x, mu_law)
    assert t.dtype == np.int32 and t.shape == x.shape
    assert ((t >= 32000) & (t < 33024)).all()


@props
@given(hnp.arrays(np.float32, hnp.array_shapes(max_dims=2, max_side=8),
                  elements=st.floats(allow_nan=False, width=32)), st.booleans())
def test_float32_inputs_stay_in_range(x, mu_law):
    t = encode_continuous(x, mu_law)
    assert ((t >= 32000) & (t < 33024)).all()


@props
@given(st.lists(in_mu_range, min_size=1, max_size=50))
def test_round_trip_within_half_a_bin_in_the_mu_law_domain(values):
    x = np.array(values, dtype=np.float64)
    back = decode_continuous(encode_continuous(x, mu_law=True), mu_law=True)
    assert back.dtype == np.float32
    assert np.abs(F(back) - F(x)).max() <= HALF_BIN + FLOAT_SLACK


@props
@given(st.lists(in_unit, min_size=1, max_size=50))
def test_round_trip_within_half_a_bin_without_mu_law(values):
    x = np.array(values, dtype=np.float64)
    back = decode_continuous(encode_continuous(x, mu_law=False), mu_law=False)
    assert np.abs(back.astype(np.float64) - x).max() <= HALF_BIN + FLOAT_SLACK


@props
@given(st.lists(any_float, min_size=2, max_size=60), st.booleans())
def test_encoding_is_monotone(values, mu_law):
    x = np.sort(np.array(values, dtype=np.float64))
    t = encode_continuous(x, mu_law)
    assert (np.diff(t) >= 0).all()


@props
@given(st.lists(finite, min_size=1, max_size=40))
def test_tokens_equal_the_spec_formula(values):
    x = np.array(values, dtype=np.float64)
    # the binning step against the SPEC formula on the same companded values
    assert (encode_continuous(x, True) - 32000 == spec_bins(mu_law_transform(x))).all()
    assert (encode_continuous(x, False) - 32000 == spec_bins(x)).all()
    # and the companding itself against the SPEC's log formula
    assert np.allclose(mu_law_transform(x), F(x), rtol=1e-12, atol=1e-15)


def test_bin_edges_are_exactly_the_spec_formula():
    k = np.arange(NUM_BINS + 1)
    for dtype in (np.float64, np.float32):
        one, two = dtype(1), dtype(2)
        edges = (-1.0 + 2.0 * k / NUM_BINS).astype(dtype)  # exact in both precisions
        t = encode_continuous(edges, mu_law=False) - CONTINUOUS_OFFSET
        assert (t == np.minimum(k, NUM_BINS - 1)).all()
        # one ulp below an edge: the SPEC formula evaluated in the value's own precision
        below = np.nextafter(edges[1:], dtype(-2.0))
        in_precision = np.minimum(np.floor((below + one) / two * dtype(NUM_BINS)), 1023)
        assert (encode_continuous(below, mu_law=False) - CONTINUOUS_OFFSET == in_precision).all()
        # clearly below an edge: the previous bin
        clearly = edges[1:] - dtype(1e-4)
        assert (encode_continuous(clearly, mu_law=False) - CONTINUOUS_OFFSET == k[1:] - 1).all()
    assert encode_continuous(np.array([1.0]), mu_law=False)[0] == 33023
    assert encode_continuous(np.array([-1.0]), mu_law=False)[0] == 32000
    # under mu-law, F(+-M) = +-1 are the extreme bins too, and beyond them values clip
    assert list(encode_continuous(np.array([-1e9, -256.0, 256.0, 1e9]))) == [32000, 32000,
                                                                               33023, 33023]
    assert list(encode_continuous(np.array([-np.inf, np.inf]), False)) == [32000, 33023]


def test_zero_sits_at_the_middle_edge():
    assert encode_continuous(np.array([0.0, -0.0]))[0] == 32000 + 512
    assert encode_continuous(np.array([-1e-12]))[0] == 32000 + 511


def test_decode_gives_bin_centres_and_inverts_mu_law():
    t = np.arange(32000, 33024)
    centres = (np.arange(NUM_BINS) + 0.5) / 512 - 1
    assert np.allclose(decode_continuous(t, mu_law=False), centres, atol=1e-7)
    assert np.allclose(F(decode_continuous(t, mu_law=True)), centres, atol=1e-6)
    assert (encode_continuous(decode_continuous(t, mu_law=True)) == t).all()
    assert (encode_continuous(decode_continuous(t, mu_law=False), False) == t).all()
    x = np.linspace(-300, 300, 1001)
    assert np.allclose(inverse_mu_law(mu_law_transform(x)), x, rtol=1e-9, atol=1e-9)


def test_nan_is_an_error_naming_field_and_index():
    x = np.zeros((3, 2))
    x[2, 1] = np.nan
    with pytest.raises(TokenizeError, match=r"'obs/joints'.*NaN at index \(2, 1\)"):
        encode_continuous(x, field="obs/joints")


def test_non_numeric_continuous_is_an_error():
    with pytest.raises(TokenizeError, match="numeric"):
        encode_continuous(np.array(["a"]), field="x")


@pytest.mark.parametrize("bad", [31999, 33024, -1, 5])
def test_decode_rejects_tokens_outside_the_continuous_range(bad):
    with pytest.raises(TokenizeError, match=str(bad)):
        decode_continuous(np.array([32000, bad]))


# --- discrete ---------------------------------------------------------------------------------

@props
@given(hnp.arrays(st.sampled_from([np.uint8, np.int16, np.int32, np.int64, np.uint16]),
                  hnp.array_shapes(max_dims=3, max_side=5),
                  elements=st.integers(0, 255)))
def test_discrete_values_are_their_own_tokens(x):
    t = encode_discrete(x)
    assert t.dtype == np.int32 and t.shape == x.shape
    assert (t == x).all()
    assert (decode_discrete(t) == x).all()


def test_discrete_full_range_and_row_major_order():
    x = np.arange(1024).reshape(32, 32)
    assert (encode_discrete(x).reshape(-1) == np.arange(1024)).all()


def test_discrete_bool_and_whole_floats_are_accepted():
    assert list(encode_discrete(np.array([True, False]))) == [1, 0]
    assert list(encode_discrete(np.array([3.0, 0.0, 1023.0]))) == [3, 0, 1023]


@pytest.mark.parametrize("values, shown, index", [
    (np.array([0, 5, 1024]), "1024", r"\(2,\)"),
    (np.array([[0, 1], [-1, 2]]), "-1", r"\(1, 0\)"),
    (np.array([7, 2 ** 40]), str(2 ** 40), r"\(1,\)"),
    (np.array([1.0, 2.5]), "2.5", r"\(1,\)"),
    (np.array([1.0, np.nan]), "nan", r"\(1,\)"),
    (np.array([-3.0]), "-3", r"\(0,\)"),
])
def test_bad_discrete_values_are_errors_never_wrapped(values, shown, index):
    with pytest.raises(TokenizeError) as err:
        encode_discrete(values, field="actions")
    msg = str(err.value)
    assert "'actions'" in msg and shown in msg
    assert re.search(index, msg)


def test_discrete_rejects_non_numbers():
    with pytest.raises(TokenizeError, match="integers"):
        encode_discrete(np.array(["1"]), field="obs")
    with pytest.raises(TokenizeError, match="integers"):
        encode_discrete(np.array([1 + 2j]), field="obs")


def test_decode_discrete_checks_the_range():
    with pytest.raises(TokenizeError, match="32000"):
        decode_discrete(np.array([1, 32000]))


# --- found by mutation testing (docs/mutation-testing.md) -------------------------------------

def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(TokenizeError) as err:
        fn(*args, **kwargs)
    return str(err.value)


def test_value_errors_are_exact_one_line_messages():
    """The whole message, default field names included: "where: why" naming field and index."""
    assert _message(decode_continuous, np.array([1.5])) == \
        "field 'tokens': tokens must be integers, got float64"
    assert _message(decode_continuous, np.array([32000, 33024])) == \
        "field 'tokens': token 33024 at index (1,) is not a continuous token [32000, 33024)"
    assert _message(encode_discrete, np.array(["a"])) == \
        "field 'value': discrete values must be integers, got dtype <U1"
    assert _message(encode_discrete, np.array([0, 1024])) == (
        "field 'value': discrete value 1024 at index (1,) is outside [0, 1024) (negative and "
        "large values are never wrapped or clipped)")
    assert re.fullmatch(r"field 'value': discrete value \S*0\.5\)? at index \(0,\) is not an "
                        r"integer", _message(encode_discrete, np.array([0.5])))
    assert _message(decode_discrete, np.array([1.0])) == \
        "field 'tokens': tokens must be integers, got float64"
    for tokens, shown in (([0, 1024], "token 1024 at index (1,)"),
                          ([0, -1], "token -1 at index (1,)"),
                          ([0, 2000], "token 2000 at index (1,)")):
        assert _message(decode_discrete, np.array(tokens)) == \
            f"field 'tokens': {shown} is not a discrete token [0, 1024)"
    assert _message(decode_discrete, np.array([1.0]), field="act").startswith("field 'act': ")
    assert _message(encode_discrete, np.array([-1]), field="act").startswith("field 'act': ")


def test_value_dtypes_and_defaults():
    assert encode_discrete(np.array([True, False])).dtype == np.int32
    assert decode_discrete(np.array([3], np.int32)).dtype == np.int64
    assert inverse_mu_law(np.array([0.5])).dtype == np.float64
    assert inverse_mu_law(np.array([0.5]), dtype=np.float32).dtype == np.float32
    assert bin_centres().dtype == np.float64 and bin_centres(np.float32).dtype == np.float32
    assert bin_centres(np.float32)[0] == np.float32(0.5 / 512 - 1)
    t = encode_continuous(np.array([-200.0, -0.3, 0.0, 7.0, 250.0]))
    assert (decode_continuous(t) == decode_continuous(t, mu_law=True)).all()  # mu-law by default
    assert not (decode_continuous(t) == decode_continuous(t, mu_law=False)).all()


def test_continuous_work_precision_inputs_and_warnings():
    """The SPEC formula runs in the value's own precision (float64 for integers), never writes
    into the caller's array, and huge values clip without a floating-point warning."""
    assert mu_law_transform(np.array([3], np.int16)).dtype == np.float64
    assert mu_law_transform(np.array([3.0], np.float32)).dtype == np.float32
    assert mu_law_transform(np.array([3.0], np.float32), dtype=np.float64).dtype == np.float64
    for mu_law in (True, False):
        x = np.array([0.5, -0.25, 3.0])
        before = x.copy()
        encode_continuous(x, mu_law)
        assert (x == before).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        huge = np.array([1e308, -1e308, np.inf])
        assert encode_continuous(huge).tolist() == [33023, 32000, 33023]
        assert encode_continuous(huge, False).tolist() == [33023, 32000, 33023]
        assert mu_law_transform(np.array([1e308]))[0] == np.inf  # clipped to 1 by the encoder
    assert _message(encode_continuous, np.array(["a"])) == \
        "field 'value': continuous values must be numeric, got <U1"
    assert _message(encode_continuous, np.array([np.nan])) == \
        "field 'value': NaN at index (0,) cannot be tokenized"
