"""The checker of multi-model train sections (dslc/train_multi.py): applications of models in
a loss, their names, types and dependencies; the located diagnostics are in
tests/bad_inputs/train_gan_*.dl."""

from __future__ import annotations

from pathlib import Path

import pytest

import dslc
from dslc.diagnostics import DslcError
from dslc.sources import load_program
from dslc.train_check import pick_train
from dslc.train_multi import check_multi_train

ROOT = Path(__file__).resolve().parents[1]


def check(tmp_path: Path, text: str, model: str = "generator"):
    f = tmp_path / "g.dl"
    f.write_text(text)
    graph = dslc.load(f, model=model).source
    prog = load_program(f)
    return check_multi_train(prog, pick_train(prog, model, None), graph)


def gan_text(g_loss: str = "-mean(log(discriminator(generator(z))), dim=(0, 1))") -> str:
    text = (ROOT / "specs" / "gan.dl").read_text()
    return text.replace("-mean(log(discriminator(generator(z))), dim=(0, 1))", g_loss)


def test_applications_are_typed_named_and_ordered(tmp_path):
    spec = check(tmp_path, gan_text())
    assert spec.models == ["generator", "discriminator"]
    assert [u.model for u in spec.updates] == ["discriminator", "generator"]
    d, g = spec.updates
    assert [(a.name, a.model, a.args, str(a.type), sorted(a.depends_on))
            for a in d.applications] == [
        ("discriminator_real", "discriminator", ["real"], "f32[B, 1]", ["discriminator"]),
        ("generator_z", "generator", ["z"], "f32[B, 1, 28, 28]", ["generator"]),
        ("discriminator_generator_z", "discriminator", ["generator_z"], "f32[B, 1]",
         ["discriminator", "generator"])]
    assert [a.name for a in g.applications] == ["generator_z", "discriminator_generator_z"]
    assert [(n, str(t)) for n, t in spec.noise] == [("z", "f32[B, 100]")]
    assert spec.batch == 64 and spec.epochs == 20


def test_a_pipeline_and_a_repeated_application_are_one_application(tmp_path):
    spec = check(tmp_path, gan_text("-mean(log(z -> generator -> discriminator), dim=(0, 1)) "
                                    "+ 0.0 * mean(discriminator(generator(z)), dim=(0, 1))"))
    assert [a.name for a in spec.updates[1].applications] == ["generator_z",
                                                              "discriminator_generator_z"]


def test_the_same_section_is_checked_from_either_model(tmp_path):
    a = check(tmp_path, gan_text(), "generator")
    b = check(tmp_path, gan_text(), "discriminator")
    assert [u.loss_args for u in a.updates] == [u.loss_args for u in b.updates]


def test_a_model_listed_twice_is_e0630(tmp_path):
    with pytest.raises(DslcError) as exc:
        check(tmp_path, gan_text().replace("for generator, discriminator",
                                           "for generator, discriminator, generator"))
    assert exc.value.diagnostics[0].code == "E0630"
    assert "listed twice" in exc.value.diagnostics[0].message
