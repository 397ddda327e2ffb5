"""EpisodeTokenizer: the per-timestep layout, parallel arrays, decisions and decoders.

The vectorised tokenizer is compared against a plain per-step reference written here from the
SPEC's layout rules and the per-modality encoders, on random episodes of every shape.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trajcorpus.errors import TokenizeError
from trajcorpus.schemas.catalog import TokenizeSettings
from trajcorpus.schemas.episode import Episode, ordered_observation_names
from trajcorpus.tokenizers import (
    PATCH_SLOT,
    SEPARATOR,
    EpisodeTokenizer,
    Modality,
    TokenizedEpisode,
    action_tokens,
    decode_actions,
    encode_continuous,
    encode_discrete,
    observation_tokens,
    patchify,
    resize_images,
    to_channels,
    train_text_model,
    unpatchify,
)

FIXTURES = Path(__file__).parent / "fixtures"
rng = np.random.default_rng(7)


@functools.lru_cache(maxsize=1)
def text_model():
    ann = json.loads((FIXTURES / "image_caption" / "coco" / "annotations" /
                      "captions_train2017.json").read_text())
    return train_text_model([a["caption"] for a in ann["annotations"]], None, 120)


def make_episode(obs, kinds, actions, action_kind="discrete", eid="ep") -> Episode:
    t = actions.shape[0]
    return Episode("demo", "task", "agent", eid, (0,), obs, kinds, actions, action_kind,
                   np.zeros(t, np.float32), False, True, 0.0, {"uri": "test"})


def texts(n: int) -> np.ndarray:
    words = ["a cat", "the red block on the green one", "", "stack", "a photo of a dog"]
    return np.array([words[i % len(words)] for i in range(n)], dtype=object)


# --- the reference: one timestep at a time, straight from the SPEC ----------------------------

def reference(ep: Episode, tk: EpisodeTokenizer) -> TokenizedEpisode:
    kinds = ep.observation_kinds
    names = ordered_observation_names(kinds)
    caption = ep.action_kind == "none"
    image_names = [n for n in names if kinds[n] == "image"]
    if tk.channels:
        channels = tk.channels
    elif image_names:
        channels = max(3 if ep.observations[n].ndim == 4 and ep.observations[n].shape[-1] >= 3
                       else 1 for n in image_names)
    else:
        channels = 3
    tokens, mods, locs, patches, positions, offs, poffs = [], [], [], [], [], [0], [0]
    for t in range(ep.length):
        txt, img, ten = [], [], []
        for n in names:
            x = ep.observations[n]
            if kinds[n] == "text":
                if tk.settings.text_fields is not None and n not in tk.settings.text_fields:
                    continue
                if len(x) == ep.length or t == 0:
                    txt += [(int(i), Modality.TEXT) for i in tk.text.encode(x[t if len(x) > 1
                                                                              else 0])]
            elif kinds[n] == "image":
                frame = to_channels(x[t:t + 1], channels)
                frame = resize_images(frame, tk.image_size_for(*frame.shape[1:3]), tk.resample)
                p, pos = patchify(frame[0])
                patches.append(p)
                positions.append(pos)
                img += [(PATCH_SLOT, Modality.IMAGE)] * len(p)
            elif kinds[n] == "continuous":
                ten += [(int(v), Modality.CONTINUOUS) for v in
                        encode_continuous(x[t].reshape(-1), tk.mu_law_for(n))]
            else:
                ten += [(int(v), Modality.DISCRETE) for v in encode_discrete(x[t].reshape(-1))]
        obs = img + ten + txt if caption else txt + img + ten
        step = list(obs)
        if not caption:
            a = np.asarray(ep.actions[t]).reshape(-1)
            enc = (encode_discrete(a) if ep.action_kind == "discrete"
                   else encode_continuous(a, tk.mu_law_for("actions")))
            step += [(SEPARATOR, Modality.SEPARATOR)] + [(int(v), Modality.ACTION) for v in enc]
        tokens += [s[0] for s in step]
        mods += [s[1] for s in step]
        locs += list(range(len(obs))) + [-1] * (len(step) - len(obs))
        offs.append(len(tokens))
        poffs.append(sum(len(p) for p in patches))
    mod = np.array(mods, np.uint8)
    return TokenizedEpisode(
        np.array(tokens, np.int32), mod,
        ((mod == Modality.TEXT) | (mod == Modality.ACTION)).astype(np.uint8),
        np.array(locs, np.int16), np.array(offs, np.int64),
        np.concatenate(patches) if patches else np.zeros((0, 16, 16, channels), np.uint8),
        np.concatenate(positions).astype(np.int16) if positions else np.zeros((0, 2), np.int16),
        np.array(poffs, np.int64))


def assert_same(a: TokenizedEpisode, b: TokenizedEpisode) -> None:
    for name in ("tokens", "modality", "loss_mask", "local_position", "step_offsets", "patches",
                 "patch_position", "patch_offsets"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        assert x.shape == y.shape and (x == y).all(), name


@st.composite
def episodes(draw):
    t = draw(st.integers(1, 5))
    caption = draw(st.booleans()) and draw(st.booleans())
    if caption:
        t = 1
    obs, kinds = {}, {}
    seed = draw(st.integers(0, 2 ** 32 - 1))
    r = np.random.default_rng(seed)
    for i in range(draw(st.integers(0, 2))):
        per_step = draw(st.booleans())
        name = draw(st.sampled_from(["instruction", "lang/a", "lang/b", "caption"])) + str(i)
        obs[name] = texts(t if per_step else 1)[r.permutation(t if per_step else 1)]
        kinds[name] = "text"
    for i in range(draw(st.integers(0 if not caption else 1, 2))):
        h, w = draw(st.sampled_from([(16, 16), (84, 84), (40, 70), (96, 64)]))
        c = draw(st.sampled_from([None, 1, 3, 4]))
        shape = (t, h, w) if c is None else (t, h, w, c)
        name = draw(st.sampled_from(["cam", "image", "wrist/rgb"])) + str(i)
        obs[name], kinds[name] = r.integers(0, 256, shape, dtype=np.uint8), "image"
    for i in range(draw(st.integers(0, 3))):
        shape = (t,) + tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
        name = draw(st.sampled_from(["proprio/joints", "proprio/vel", "state", "z"])) + str(i)
        if draw(st.booleans()):
            obs[name], kinds[name] = r.normal(0, 50, shape), "continuous"
        else:
            obs[name], kinds[name] = r.integers(0, 1024, shape), "discrete"
    if not obs:
        obs["state"], kinds["state"] = r.normal(size=(t, 2)), "continuous"
    if caption:
        return make_episode(obs, kinds, np.zeros((1, 0), np.float32), "none")
    if draw(st.booleans()):
        return make_episode(obs, kinds, r.integers(0, 18, (t,) if draw(st.booleans())
                                                   else (t, 2)), "discrete")
    return make_episode(obs, kinds, r.uniform(-1.2, 1.2, (t, 3)).astype(np.float32),
                        "continuous")


tokenizer_settings = st.builds(
    TokenizeSettings,
    image_size=st.sampled_from([None, (32, 48), (80, 80)]),
    mu_law=st.booleans(),
    mu_law_exempt=st.sampled_from([(), ("actions",), ("proprio", "actions")]),
    text_fields=st.sampled_from([None, ("instruction0", "lang/a1", "caption0")]),
)


@settings(max_examples=120, deadline=None)
@given(episodes(), tokenizer_settings, st.sampled_from(["auto", "bilinear"]),
       st.sampled_from([None, 1, 3]))
def test_vectorised_tokenizer_equals_the_per_step_reference(ep, ts, resample, channels):
    ep.validate()
    tk = EpisodeTokenizer(ts, text_model(), resample=resample, channels=channels)
    got = tk.tokenize(ep).validate()
    assert_same(got, reference(ep, tk))
    assert got.num_steps == ep.length


# --- the layout, spelled out ------------------------------------------------------------------

def test_atari_layout():
    frames = rng.integers(0, 256, (4, 84, 84), dtype=np.uint8)
    actions = np.array([0, 5, 17, 3], np.int32)
    ep = make_episode({"frame": frames}, {"frame": "image"}, actions)
    tok = EpisodeTokenizer(TokenizeSettings(image_size=(80, 80))).tokenize(ep).validate()
    assert tok.step_offsets.tolist() == [0, 27, 54, 81, 108]
    step = slice(27, 54)
    assert tok.tokens[step].tolist() == [-1] * 25 + [33024, 5]
    assert tok.modality[step].tolist() == [2] * 25 + [5, 6]
    assert tok.loss_mask[step].tolist() == [0] * 26 + [1]
    assert tok.local_position[step].tolist() == list(range(25)) + [-1, -1]
    assert tok.patches.shape == (100, 16, 16, 1) and tok.patch_offsets.tolist() == [0, 25, 50,
                                                                                     75, 100]
    assert tok.patch_position[:6].tolist() == [[0, 0], [0, 1], [0, 2], [0, 3], [0, 4], [1, 0]]
    assert (decode_actions(tok)[:, 0] == actions).all()
    resized = resize_images(frames, (80, 80))
    for t in range(4):
        p = slice(tok.patch_offsets[t], tok.patch_offsets[t + 1])
        assert (unpatchify(tok.patches[p], tok.patch_position[p])[..., 0] == resized[t]).all()


def test_observation_order_text_images_tensors_nested_lexicographic():
    t = 2
    obs = {"proprio/z": rng.normal(size=(t, 1)), "proprio/a": rng.integers(0, 9, (t, 2)),
           "cam": rng.integers(0, 256, (t, 16, 16, 3), dtype=np.uint8),
           "b_cam": rng.integers(0, 256, (t, 16, 32, 3), dtype=np.uint8),
           "instruction": np.array(["stack"], dtype=object), "aaa": rng.normal(size=(t, 1))}
    kinds = {"proprio/z": "continuous", "proprio/a": "discrete", "cam": "image",
             "b_cam": "image", "instruction": "text", "aaa": "continuous"}
    ep = make_episode(obs, kinds, np.zeros((t, 1), np.float32), "continuous")
    tok = EpisodeTokenizer(TokenizeSettings(), text_model()).tokenize(ep).validate()
    n_text = len(text_model().encode("stack"))
    s0 = tok.modality[tok.step_offsets[0]:tok.step_offsets[1]].tolist()
    # text, b_cam (2 patches), cam (1 patch), aaa, proprio/a (2), proprio/z, '|', action
    assert s0 == [1] * n_text + [2, 2, 2, 4, 3, 3, 4, 5, 6]
    s1 = tok.modality[tok.step_offsets[1]:tok.step_offsets[2]].tolist()
    assert s1 == [2, 2, 2, 4, 3, 3, 4, 5, 6]  # per-episode text only at timestep 0
    assert tok.patch_position[:3].tolist() == [[0, 0], [0, 1], [0, 0]]
    a = tok.tokens[tok.modality == Modality.DISCRETE].reshape(t, 2)
    assert (a == obs["proprio/a"]).all()


def test_per_episode_text_shifts_local_positions_of_step_zero_only():
    ep = make_episode({"instruction": np.array(["stack the red block"], dtype=object),
                       "state": rng.normal(size=(3, 2))},
                      {"instruction": "text", "state": "continuous"},
                      np.zeros(3, np.int64))
    tok = EpisodeTokenizer(TokenizeSettings(), text_model()).tokenize(ep).validate()
    n = len(text_model().encode("stack the red block"))
    assert tok.local_position[:n + 4].tolist() == list(range(n + 2)) + [-1, -1]
    assert tok.loss_mask[:n].all() and tok.loss_mask[n:n + 3].sum() == 0
    assert tok.local_position[tok.step_offsets[1]:].tolist() == [0, 1, -1, -1] * 2
    assert text_model().decode(tok.tokens[:n]) == "stack the red block"


def test_caption_record_is_image_then_caption_without_separator_or_action():
    caption = "A black and white close-up of a brick wall seen at an angle."
    ep = make_episode({"image": rng.integers(0, 256, (1, 40, 70, 3), dtype=np.uint8),
                       "caption": np.array([caption], dtype=object)},
                      {"image": "image", "caption": "text"}, np.zeros((1, 0), np.float32), "none")
    tok = EpisodeTokenizer(TokenizeSettings(image_size=(32, 64)), text_model()).tokenize(ep)
    tok.validate()
    n = len(text_model().encode(caption))
    assert tok.modality.tolist() == [2] * 8 + [1] * n
    assert tok.loss_mask.tolist() == [0] * 8 + [1] * n
    assert tok.local_position.tolist() == list(range(8 + n))
    assert Modality.SEPARATOR not in tok.modality and Modality.ACTION not in tok.modality
    assert text_model().decode(tok.tokens[8:]) == caption
    assert decode_actions(tok).shape == (1, 0)


def test_text_fields_setting_selects_fields():
    ep = make_episode({"instruction": np.array(["stack"], dtype=object),
                       "notes": np.array(["a cat", "a dog"], dtype=object),
                       "s": np.zeros((2, 1))},
                      {"instruction": "text", "notes": "text", "s": "continuous"},
                      np.zeros(2, np.int64))
    only = EpisodeTokenizer(TokenizeSettings(text_fields=("notes",)), text_model()).tokenize(ep)
    assert text_model().decode(only.tokens[only.modality == 1]) == text_model().decode(
        np.concatenate(text_model().encode_batch(["a cat", "a dog"])))
    none = EpisodeTokenizer(TokenizeSettings(text_fields=()), None).tokenize(ep)
    assert Modality.TEXT not in none.modality


def test_mu_law_settings_per_field():
    x = np.array([[0.5, 50.0]])
    ep = make_episode({"proprio/joints": x, "velocity": x},
                      {"proprio/joints": "continuous", "velocity": "continuous"},
                      np.array([[0.5, -0.25]], np.float32), "continuous")
    tk = EpisodeTokenizer(TokenizeSettings(mu_law=True, mu_law_exempt=("proprio", "actions")))
    assert not tk.mu_law_for("proprio/joints") and not tk.mu_law_for("actions")
    assert tk.mu_law_for("velocity") and tk.mu_law_for("proprioception")
    tok = tk.tokenize(ep)
    obs = tok.tokens[tok.modality == Modality.CONTINUOUS]
    assert obs.tolist() == (encode_continuous(x[0], False).tolist()
                            + encode_continuous(x[0], True).tolist())
    assert np.allclose(tk.decode_actions(tok), [[0.5, -0.25]], atol=1 / 1024)
    off = EpisodeTokenizer(TokenizeSettings(mu_law=False)).tokenize(ep)
    assert (off.tokens[off.modality == Modality.CONTINUOUS][[1, 3]] == 33023).all()  # clipped


def test_channel_rule_mixes_to_rgb_and_can_be_forced():
    gray = rng.integers(0, 256, (1, 16, 16), dtype=np.uint8)
    rgba = rng.integers(0, 256, (1, 16, 16, 4), dtype=np.uint8)
    ep = make_episode({"a": gray, "b": rgba}, {"a": "image", "b": "image"}, np.zeros(1, np.int64))
    tok = EpisodeTokenizer().tokenize(ep)
    assert tok.patches.shape == (2, 16, 16, 3)
    assert (tok.patches[0] == gray[0, ..., None]).all()  # gray replicated into RGB
    assert (tok.patches[1] == to_channels(rgba)[0]).all()  # RGBA composited over white
    assert EpisodeTokenizer(channels=1).tokenize(ep).patches.shape == (2, 16, 16, 1)
    only_gray = make_episode({"a": gray}, {"a": "image"}, np.zeros(1, np.int64))
    assert EpisodeTokenizer().tokenize(only_gray).patches.shape == (1, 16, 16, 1)


def test_default_image_size_rule_applies_when_unset():
    ep = make_episode({"f": rng.integers(0, 256, (2, 84, 84), dtype=np.uint8)}, {"f": "image"},
                      np.zeros(2, np.int64))
    tok = EpisodeTokenizer(TokenizeSettings(image_size=None)).tokenize(ep)
    assert tok.patches.shape[0] == 2 * 25  # 80x80


def test_observation_tokens_and_action_tokens():
    ep = make_episode({"s": np.array([[1, 2], [3, 4]]), "t": np.array(["a cat", "stack"],
                                                                        dtype=object)},
                      {"s": "discrete", "t": "text"}, np.array([[7], [9]]))
    tok = EpisodeTokenizer(TokenizeSettings(), text_model()).tokenize(ep)
    per_step = observation_tokens(tok)
    assert len(per_step) == 2
    assert per_step[0].tolist() == text_model().encode("a cat").tolist() + [1, 2]
    assert per_step[1].tolist() == text_model().encode("stack").tolist() + [3, 4]
    assert action_tokens(tok).tolist() == [[7], [9]]


# --- errors -----------------------------------------------------------------------------------

def test_bad_discrete_observation_names_episode_field_and_value():
    ep = make_episode({"buttons": np.array([[0, 1], [2, 1024]])}, {"buttons": "discrete"},
                      np.zeros(2, np.int64), eid="pong-7")
    with pytest.raises(TokenizeError) as err:
        EpisodeTokenizer().tokenize(ep)
    msg = str(err.value)
    assert "pong-7" in msg and "observations/buttons" in msg and "1024" in msg and "(1, 1)" in msg


def test_bad_actions_and_nan_are_errors():
    ep = make_episode({"s": np.zeros((2, 1))}, {"s": "continuous"}, np.array([3, -1]),
                      eid="e1")
    with pytest.raises(TokenizeError, match=r"e1.*'actions'.*-1"):
        EpisodeTokenizer().tokenize(ep)
    ep = make_episode({"s": np.array([[0.0], [np.nan]])}, {"s": "continuous"},
                      np.zeros(2, np.int64), eid="e2")
    with pytest.raises(TokenizeError, match=r"e2.*observations/s.*NaN"):
        EpisodeTokenizer().tokenize(ep)


def test_text_without_a_model_is_an_error():
    ep = make_episode({"instruction": np.array(["stack"], dtype=object), "s": np.zeros((1, 1))},
                      {"instruction": "text", "s": "continuous"}, np.zeros(1, np.int64))
    with pytest.raises(TokenizeError, match="no text model"):
        EpisodeTokenizer().tokenize(ep)


def test_shape_mismatch_and_bad_options_are_errors():
    ep = make_episode({"s": np.zeros((3, 1))}, {"s": "continuous"}, np.zeros(2, np.int64))
    with pytest.raises(TokenizeError, match="expected 2 steps"):
        EpisodeTokenizer().tokenize(ep)
    with pytest.raises(TokenizeError):
        EpisodeTokenizer(resample="cubic")
    with pytest.raises(TokenizeError):
        EpisodeTokenizer(channels=4)


# --- TokenizedEpisode contract ----------------------------------------------------------------

def _sample() -> TokenizedEpisode:
    ep = make_episode({"f": rng.integers(0, 256, (3, 32, 32), dtype=np.uint8),
                       "s": rng.normal(size=(3, 2))}, {"f": "image", "s": "continuous"},
                      rng.uniform(-1, 1, (3, 2)).astype(np.float32), "continuous")
    return EpisodeTokenizer().tokenize(ep).validate()


@pytest.mark.parametrize("corrupt, message", [
    (lambda t: t.loss_mask.__setitem__(0, 1), "loss_mask"),
    (lambda t: t.local_position.__setitem__(7, 3), "local position -1"),
    (lambda t: t.tokens.__setitem__(4, 32999 + 1000), "CONTINUOUS"),
    (lambda t: t.modality.__setitem__(5, 9), "modality 9"),
    (lambda t: t.modality.__setitem__(0, 4), "patch slots"),
    (lambda t: t.step_offsets.__setitem__(1, 99), "step_offsets"),
])
def test_validate_catches_corruption(corrupt, message):
    tok = _sample()
    corrupt(tok)
    with pytest.raises(TokenizeError, match=message):
        tok.validate()


def test_span_keeps_whole_timesteps():
    tok = _sample()
    part = tok.span(1, 3).validate()
    assert part.num_steps == 2
    assert (part.tokens == tok.tokens[tok.step_offsets[1]:]).all()
    assert (part.patches == tok.patches[tok.patch_offsets[1]:]).all()


def test_tokenizer_pickles_for_beam():
    ep = make_episode({"instruction": np.array(["stack"], dtype=object),
                       "f": rng.integers(0, 256, (2, 84, 84), dtype=np.uint8)},
                      {"instruction": "text", "f": "image"}, np.zeros(2, np.int64))
    tk = EpisodeTokenizer(TokenizeSettings(image_size=(80, 80)), text_model())
    assert_same(pickle.loads(pickle.dumps(tk)).tokenize(ep), tk.tokenize(ep))


def test_options_are_read_from_settings_fields_when_present():
    class Extended(TokenizeSettings):
        resample: str = "bilinear"
        image_channels: int | None = 3

    tk = EpisodeTokenizer(Extended())
    assert tk.resample == "bilinear" and tk.channels == 3
    assert EpisodeTokenizer(Extended(), resample="nearest", channels=1).channels == 1
    assert EpisodeTokenizer().resample == "auto" and EpisodeTokenizer().channels is None


# --- found by mutation testing (docs/mutation-testing.md) -------------------------------------

def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(TokenizeError) as err:
        fn(*args, **kwargs)
    return str(err.value)


def test_decoding_actions_checks_and_defaults():
    """The trainer-side decoders: mu-law on by default, exact dtypes, one-line errors."""
    ep = make_episode({"s": np.zeros((3, 1))}, {"s": "continuous"},
                      np.array([[0.5, -80.0], [3.0, 0.0], [-1.0, 200.0]], np.float32),
                      "continuous")
    tok = EpisodeTokenizer().tokenize(ep)  # actions mu-law companded (the default settings)
    assert (decode_actions(tok) == decode_actions(tok, mu_law=True)).all()
    assert np.allclose(decode_actions(tok), ep.actions, rtol=0.05, atol=1e-3)
    disc = EpisodeTokenizer().tokenize(make_episode({"s": np.zeros((3, 1))}, {"s": "continuous"},
                                                    np.array([[1023], [0], [5]])))
    assert decode_actions(disc).dtype == np.int64 and decode_actions(disc)[:, 0].tolist() == [
        1023, 0, 5]
    caption = dataclasses.replace(disc, modality=np.where(
        disc.modality == Modality.ACTION, Modality.DISCRETE, disc.modality).astype(np.uint8))
    assert decode_actions(caption).dtype == np.float32 and decode_actions(caption).shape == (3, 0)
    # a step with one action token fewer: named, with both counts
    broken = dataclasses.replace(tok, modality=tok.modality.copy())
    broken.modality[np.flatnonzero(tok.modality == Modality.ACTION)[3]] = Modality.CONTINUOUS
    assert _error(action_tokens, broken) == \
        "actions: timestep 1 has 1 action tokens, timestep 0 has 2"
    mixed = dataclasses.replace(disc, tokens=disc.tokens.copy())
    mixed.tokens[np.flatnonzero(disc.modality == Modality.ACTION)[1]] = 32000
    assert _error(decode_actions, mixed) == \
        "actions: action tokens mix the discrete and continuous ranges (mixed actions " \
        "decode with decode_mixed_actions)"
    over = dataclasses.replace(disc, tokens=disc.tokens.copy())
    over.tokens[np.flatnonzero(disc.modality == Modality.ACTION)[1]] = 1024
    assert _error(decode_actions, over).startswith("actions: ")
    bad_cont = dataclasses.replace(tok, tokens=tok.tokens.copy())
    bad_cont.tokens[np.flatnonzero(tok.modality == Modality.ACTION)[0]] = 33024
    assert _error(decode_actions, bad_cont).startswith("field 'actions': token 33024")


def test_episode_level_action_errors_are_exact():
    ep = make_episode({"s": np.zeros((2, 1))}, {"s": "continuous"}, np.array([[0.5], [np.nan]]),
                      "continuous")
    tk = EpisodeTokenizer()
    assert _error(tk.tokenize, ep) == \
        "episode 'ep' field 'actions': NaN at index (1, 0) cannot be tokenized"
    for shape in ((3, 1), (2, 1, 1), (3,)):
        assert _error(tk.tokenize, dataclasses.replace(ep, actions=np.zeros(shape))) == (
            f"episode 'ep' field 'actions': expected [T] or [T, A] with T=2, got shape {shape}")
    weird = dataclasses.replace(ep, action_kind="weird", actions=np.zeros((2, 1)))
    assert _error(tk.tokenize, weird) == \
        "episode 'ep' field 'action_kind': unknown action kind 'weird'"


def test_mu_law_exemptions_accept_the_observations_prefix():
    """Catalogs may spell a field with or without "observations/": both must select it."""
    tk = EpisodeTokenizer(TokenizeSettings(mu_law=True,
                                           mu_law_exempt=("observations/proprio", "velocity")))
    assert not tk.mu_law_for("proprio/joints") and not tk.mu_law_for("observations/proprio")
    assert not tk.mu_law_for("observations/velocity") and not tk.mu_law_for("velocity")
    assert tk.mu_law_for("observations/pos") and tk.mu_law_for("actions")


def test_text_without_a_text_model_is_an_exact_error():
    ep = make_episode({"t": np.array(["a cat"], dtype=object), "s": np.zeros((2, 1))},
                      {"t": "text", "s": "continuous"}, np.zeros(2, np.int64))
    assert _error(EpisodeTokenizer().tokenize, ep) == (
        "episode 'ep' field 'observations/t': text observation but no text model was given "
        "(TokenizeSettings.text_model)")


def test_three_text_fields_interleave_per_step_like_the_reference():
    """Several text fields are interleaved step by step in field order (per-step and
    per-episode fields mixed): the running offset of each field must accumulate."""
    ep = make_episode({"a": texts(4), "b": np.array(["stack"], dtype=object),
                       "c": texts(7)[3:], "s": np.arange(4).reshape(4, 1)},
                      {"a": "text", "b": "text", "c": "text", "s": "discrete"},
                      np.arange(4))
    tk = EpisodeTokenizer(TokenizeSettings(), text_model())
    assert_same(tk.tokenize(ep), reference(ep, tk))


def test_bad_text_and_image_fields_are_exact_errors():
    tk = EpisodeTokenizer(TokenizeSettings(), text_model())
    for shape, strings in (((3,), texts(3)), ((2, 1), texts(2).reshape(2, 1))):
        ep = make_episode({"t": texts(2), "s": np.zeros((2, 1))}, {"t": "text", "s": "continuous"},
                          np.zeros(2, np.int64))
        ep = dataclasses.replace(ep, observations={**ep.observations, "t": strings})
        assert _error(tk.tokenize, ep) == (
            f"episode 'ep' field 'observations/t': text must be [1] (per episode) or [2] (per "
            f"step), got {shape}")
    ep = make_episode({"t": texts(2), "s": np.zeros((2, 1))}, {"t": "text", "s": "continuous"},
                      np.zeros(2, np.int64))
    ep = dataclasses.replace(ep, observations={**ep.observations,
                                               "t": np.array(["a", 5], dtype=object)})
    assert _error(tk.tokenize, ep) == "episode 'ep' field 'observations/t': entry 1 is int, not str"
    img = make_episode({"cam": np.zeros((2, 16, 16), np.uint8)}, {"cam": "image"},
                       np.zeros(2, np.int64))
    img = dataclasses.replace(img, observations={"cam": np.zeros((2, 16, 16), np.float32)})
    assert _error(tk.tokenize, img) == \
        "episode 'ep' field 'observations/cam': images must be uint8, got float32"


def test_an_episode_with_a_single_text_token_keeps_it():
    ep = make_episode({"t": np.array(["a"], dtype=object), "s": np.zeros((2, 1))},
                      {"t": "text", "s": "continuous"}, np.zeros(2, np.int64))
    tk = EpisodeTokenizer(TokenizeSettings(), text_model())
    assert len(text_model().encode("a")) == 1
    tok = tk.tokenize(ep)
    assert_same(tok, reference(ep, tk))
    assert (tok.modality == Modality.TEXT).sum() == 1


def test_observation_size_limit_is_exactly_int16():
    """Local positions are int16: an observation of 32768 tokens fits (0..32767), one more is
    an error, never a wrapped position."""
    ok = make_episode({"s": np.zeros((1, 32768), np.int64)}, {"s": "discrete"},
                      np.zeros(1, np.int64))
    tok = EpisodeTokenizer().tokenize(ok)
    assert tok.local_position.max() == 32767
    big = make_episode({"s": np.zeros((1, 32769), np.int64)}, {"s": "discrete"},
                       np.zeros(1, np.int64))
    assert _error(EpisodeTokenizer().tokenize, big) == (
        "episode 'ep': a timestep's observation has more than 32768 tokens (int16 local "
        "positions)")


def test_misshapen_fields_are_exact_errors():
    ep = make_episode({"s": np.zeros((2, 1)), "z": np.zeros((2, 1))},
                      {"s": "continuous", "z": "continuous"}, np.zeros(2, np.int64))
    short = dataclasses.replace(ep, observations={"s": np.zeros((2, 1)), "z": np.zeros((3, 1))})
    assert _error(EpisodeTokenizer().tokenize, short) == \
        "episode 'ep' field 'observations/z': expected 2 steps on axis 0, got shape (3, 1)"


def test_a_one_step_one_action_episode_decodes_its_action():
    ep = make_episode({"s": np.zeros((1, 1))}, {"s": "continuous"}, np.array([[7]]))
    assert decode_actions(EpisodeTokenizer().tokenize(ep)).tolist() == [[7]]
