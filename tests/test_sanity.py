"""Gradient-masking checks (attacks/sanity.py) on the embedded CLIP and on hand-made counts."""

import contextlib
import dataclasses
import io

import jax
import numpy as np
import pytest

from fedprompt_jax import config as config_lib
from fedprompt_jax import evaluate
from fedprompt_jax import train
from fedprompt_jax.attacks import example_keys, make_attack
from fedprompt_jax.attacks import sanity
from fedprompt_jax.attacks.pgd import fold_keys
from fedprompt_jax.data.source import load_source
from fedprompt_jax.methods import base, make_method
from fedprompt_jax.models.hf_loader import load_clip
from fedprompt_jax.models.tokenizer import load_tokenizer

N = 24                                            # examples attacked
ATTACK = "pgd:linf:eps=1/255:steps=3:random_start=false"
LARGE = config_lib.default_config().adv.sanity_attack   # PGD-20 at 16/255
KEY = jax.random.key(3)


@pytest.fixture(scope="module")
def setup():
  """Zero-shot CLIP (embedded) on digits, and the same model behind a stop_gradient."""
  model, frozen, ckpt = load_clip("embedded")
  tokenizer = load_tokenizer(ckpt, model.config.text.max_position_embeddings)
  source = load_source("digits", image_size=model.config.vision.image_size, seed=0)
  method = make_method("zeroshot", model, config_lib.default_config().method)
  aux = method.prepare(base.Context(model, frozen, tokenizer, source.class_names))
  masked = dataclasses.replace(method, logits=lambda f, p, a, e, c, x, k: method.logits(
      f, p, a, e, c, jax.lax.stop_gradient(x), k))
  return dict(frozen=frozen, aux=aux, split=source.test, method=method, masked=masked)


def report(s, method):
  """(metrics, stderr lines) of a robust evaluation of N examples in batches of 10 (the last
  one padded), with the large-radius check on all N."""
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    out = evaluate.robust_report(
        evaluate.make_robust(method, [ATTACK]), s["frozen"], {}, s["aux"], {}, {}, s["split"],
        N, 10, KEY, evaluate.make_robust(method, [LARGE]), N)
  return out, err.getvalue().splitlines()


@pytest.fixture(scope="module")
def real(setup):
  return report(setup, setup["method"])


def test_large_radius_attack_breaks_a_real_model_without_warnings(real):
  out, err = real
  assert out["robust_acc/clean"] >= 0.75, out  # zero-shot digits: there is something to break
  assert out["robust_sanity/large_radius_acc"] <= 1 / N, out
  assert out["robust_sanity/warnings"] == 0, out
  assert out["robust_sanity/monotonicity_pairs"] == 1  # the large-radius attack vs ATTACK
  assert out["robust_sanity/ce_rise/large_radius"] > out[f"robust_sanity/ce_rise/{ATTACK}"] > 0
  assert not err, err


def test_gradient_masked_model_triggers_the_warnings(setup):
  out, err = report(setup, setup["masked"])
  assert out["robust_acc/clean"] >= 0.75, out
  assert out["robust_sanity/large_radius_acc"] > sanity.LARGE_RADIUS_LIMIT, out
  # Zero gradient and no random start: ATTACK leaves x where it is, the loss cannot rise.
  assert abs(out[f"robust_sanity/ce_rise/{ATTACK}"]) < sanity.LOSS_RISE_MIN, out
  assert all(l.startswith(sanity.WARNING_PREFIX) for l in err), err
  assert out["robust_sanity/warnings"] == len(err) >= 2, (out, err)
  assert any("large-radius attack" in l and "above 10%" in l for l in err), err
  assert any(f"{ATTACK} does not raise the loss" in l for l in err), err


def test_loss_rise_is_the_mean_cross_entropy_difference(setup, real):
  """ce_rise against CE computed by hand (numpy log-softmax) at x and at the attack's x_adv."""
  s, method = setup, setup["method"]
  idx = np.arange(N)
  x = s["split"].images[idx].astype(np.float32) / 255.0
  y = s["split"].labels[idx]
  logits_fn = jax.jit(lambda v: method.logits(s["frozen"], {}, s["aux"], {}, {}, v, KEY))
  x_adv = make_attack(ATTACK)(logits_fn, x, y, fold_keys(example_keys(KEY, idx), 0))

  def mean_ce(v):
    z = np.asarray(logits_fn(v), np.float64)
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    return -logp[np.arange(N), y].mean()

  expected = mean_ce(x_adv) - mean_ce(x)
  assert expected > 0
  np.testing.assert_allclose(real[0][f"robust_sanity/ce_rise/{ATTACK}"], expected, rtol=1e-4)


def totals(n, correct, ce=None, clean_ce=0.0):
  """Hand-made sums: every example correct clean; by default each attack raises the CE by 1."""
  ce = ce or {name: clean_ce + n for name in correct}
  return sanity.Totals(n, {"clean": n, **correct}, {"clean": clean_ce, **ce})


def attacks(*specs):
  return {spec: make_attack(spec) for spec in specs}


def test_stronger_attack_relation():
  a = make_attack
  assert sanity.stronger(a("pgd:linf:eps=2/255:steps=10"), a("pgd:linf:eps=1/255:steps=10"))
  assert sanity.stronger(a("pgd:linf:eps=1/255:steps=20"), a("pgd:linf:eps=1/255:steps=10"))
  assert sanity.stronger(a("fgsm:linf:eps=2/255"), a("fgsm:linf:eps=1/255"))
  assert not sanity.stronger(a("pgd:linf:eps=2/255:steps=5"), a("pgd:linf:eps=1/255:steps=10"))
  assert not sanity.stronger(a("pgd:linf:eps=1/255"), a("pgd:linf:eps=1/255"))
  assert not sanity.stronger(a("pgd:l2:eps=0.5"), a("pgd:linf:eps=1/255"))
  assert not sanity.stronger(a("pgd:linf:eps=2/255:loss=cw"), a("pgd:linf:eps=1/255"))
  assert not sanity.stronger(a("apgd-ce:linf:eps=2/255"), a("pgd:linf:eps=1/255"))


def test_monotonicity_warns_when_a_stronger_attack_leaves_more_accuracy():
  weak, strong, other = ("pgd:linf:eps=1/255:steps=10", "pgd:linf:eps=2/255:steps=10",
                         "apgd-ce:linf:eps=2/255:steps=20")
  specs = attacks(weak, strong, other)
  # strong leaves 2 examples more than weak (beyond the 1-example tolerance): one warning.
  metrics, warnings = sanity.check(specs, totals(100, {weak: 40, strong: 42, other: 90}))
  assert metrics["robust_sanity/monotonicity_pairs"] == 1  # apgd-ce is comparable to neither
  assert metrics["robust_sanity/monotonicity_violations"] == 1
  assert len(warnings) == 1 and strong in warnings[0] and "42.0% (42/100)" in warnings[0]
  for ok in (41, 30):  # within the tolerance, or lower: no warning
    metrics, warnings = sanity.check(specs, totals(100, {weak: 40, strong: ok, other: 90}))
    assert metrics["robust_sanity/monotonicity_violations"] == 0 and not warnings, warnings


def test_large_radius_is_checked_against_weaker_attacks_of_its_norm():
  specs = attacks("pgd:linf:eps=1/255:steps=10", "apgd-ce:linf:eps=2/255:steps=20",
                  "pgd:l2:eps=0.5:steps=10")
  main = totals(100, dict(zip(specs, (50, 30, 20))))
  first = totals(16, dict(zip(specs, (5, 2, 1))))   # the same attacks on the first 16
  large_attack = make_attack(LARGE)

  def run(large_correct):
    large = sanity.LargeRadius(large_attack, LARGE, totals(16, {LARGE: large_correct}), first)
    return sanity.check(specs, main, large)

  metrics, warnings = run(0)
  assert metrics["robust_sanity/large_radius_acc"] == 0.0 and not warnings
  assert metrics["robust_sanity/monotonicity_pairs"] == 2  # the two L-inf attacks, not L2
  metrics, warnings = run(4)  # 25% > 10%, and 4 > 2 + 1 of apgd-ce on the same examples
  assert metrics["robust_sanity/large_radius_acc"] == 0.25
  assert metrics["robust_sanity/warnings"] == 2 == len(warnings)
  assert "above 10%" in warnings[0] and "apgd-ce" in warnings[1], warnings
  metrics, warnings = run(1)  # 6.25%: fine
  assert not warnings and metrics["robust_sanity/warnings"] == 0


def test_loss_rise_warns_when_the_loss_falls_or_barely_moves():
  up, down, flat = "pgd:linf:eps=1/255:steps=10", "fgsm:linf:eps=1/255", "cw:linf:eps=1/255"
  specs = attacks(up, down, flat, "fgsm:linf:eps=0")
  sums = totals(4, {up: 1, down: 2, flat: 3, "fgsm:linf:eps=0": 4},
                {up: 6.0, down: 1.0, flat: 2.0 + 4 * 5e-5, "fgsm:linf:eps=0": 2.0}, clean_ce=2.0)
  metrics, warnings = sanity.check(specs, sums)
  assert metrics[f"robust_sanity/ce_rise/{up}"] == (6.0 - 2.0) / 4
  assert metrics[f"robust_sanity/ce_rise/{down}"] == (1.0 - 2.0) / 4
  assert metrics[f"robust_sanity/ce_rise/{flat}"] == pytest.approx(5e-5)  # < LOSS_RISE_MIN
  assert "robust_sanity/ce_rise/fgsm:linf:eps=0" not in metrics  # eps = 0 cannot raise it
  assert [w.split(" does not raise the loss")[0] for w in warnings] == [down, flat], warnings
  assert metrics["robust_sanity/warnings"] == 2


def test_warnings_print_one_prefixed_line_each(capsys):
  sanity.warn(["one\n  line", "two"])
  assert capsys.readouterr().err == (f"{sanity.WARNING_PREFIX}one line\n"
                                     f"{sanity.WARNING_PREFIX}two\n")


@pytest.mark.parametrize("key,value,message", [
    ("sanity_attack", "pgd:linf:eps=-1", "adv.sanity_attack: eps=-1 in attack spec"),
    ("sanity_attack", None, "adv.sanity_attack=None is invalid"),
    ("sanity_examples", 0, "adv.sanity_examples=0 is invalid; must be an integer >= 1"),
])
def test_bad_sanity_config_is_one_line_and_writes_nothing(tmp_path, key, value, message):
  c = config_lib.default_config()
  c.adv[key] = value
  with pytest.raises(config_lib.ConfigError, match=message) as err:
    train.train_and_evaluate(c, str(tmp_path / "w"))
  assert "\n" not in str(err.value) and not (tmp_path / "w").exists()
  c.adv.sanity_attack, c.adv.sanity_examples = "", 64  # "" skips the large-radius attack
  config_lib.validate(c)


def test_summary_table_shows_only_the_headline_checks():
  from fedprompt_jax import metrics as metrics_lib  # pylint: disable=import-outside-toplevel
  records = [{"round": r, "robust_acc/clean": 0.5, "robust_sanity/large_radius_acc": acc,
              "robust_sanity/warnings": r, "robust_sanity/ce_rise/pgd": 0.25,
              "robust_sanity/monotonicity_pairs": 1} for r, acc in ((1, 0.5), (2, 0.0625))]
  rows = {line.split()[0]: line for line in metrics_lib.summary_table(records).splitlines()[3:]}
  assert set(rows) == {"robust_acc/clean", "robust_sanity/large_radius_acc",
                       "robust_sanity/warnings"}
  assert rows["robust_sanity/large_radius_acc"].split()[1:] == ["6.25%", "-"]  # no "best"
  assert rows["robust_sanity/warnings"].split()[1:] == ["2", "-"]
