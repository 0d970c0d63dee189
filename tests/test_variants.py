"""VARIANTS.toml and each student's draw: deterministic, spread, keyed by the secret."""

import collections

import pytest

from pipeline import variants
from pipeline.errors import ConfigError

EXAMPLE = """
assignment = "dae-2026"
profile = "quick"
[vary]
"noise.std" = [0.3, 0.4, 0.5]
"noise.type" = ["gaussian", "speckle"]
[set]
"training.epochs" = 1
"""


def load(tmp_path, text=EXAMPLE):
    path = tmp_path / "VARIANTS.toml"
    path.write_text(text, encoding="utf-8")
    return variants.load(path)


def test_the_example_loads_with_six_combinations_each_a_valid_config(tmp_path):
    loaded = load(tmp_path)
    assert loaded.assignment == "dae-2026" and loaded.profile == "quick"
    combinations = loaded.combinations()
    assert len(combinations) == 6 and len({tuple(c.items()) for c in combinations}) == 6
    config = variants.settings(loaded, {"noise.std": 0.5, "noise.type": "speckle"})
    assert (config.noise.std, config.noise.type, config.training.epochs) == (0.5, "speckle", 1)


def test_a_draw_is_a_pure_function_of_assignment_id_and_secret(tmp_path):
    loaded = load(tmp_path)
    first = variants.draw(loaded, "a1", b"secret")
    assert variants.draw(loaded, "a1", b"secret") == first
    assert first in loaded.combinations()
    # Pinned: a change of algorithm would move every student of a running course.
    assert [variants.draw(loaded, i, b"secret") for i in ("a1", "b2", "c3")] == [
        {"noise.std": 0.3, "noise.type": "gaussian"},
        {"noise.std": 0.5, "noise.type": "speckle"},
        {"noise.std": 0.4, "noise.type": "speckle"},
    ]


def test_draws_spread_over_the_values_and_change_with_the_secret(tmp_path):
    loaded = load(tmp_path)
    ids = [f"s{n:03d}" for n in range(600)]
    counts = collections.Counter(variants.draw(loaded, i, b"k1")["noise.std"] for i in ids)
    assert set(counts) == {0.3, 0.4, 0.5}
    assert all(150 <= count <= 250 for count in counts.values()), counts  # 200 expected each
    moved = sum(variants.draw(loaded, i, b"k1") != variants.draw(loaded, i, b"k2") for i in ids)
    assert moved > 400  # 5/6 of the students expected to move: another secret, another class
    other = variants.Variants("dae-2027", loaded.profile, loaded.vary, loaded.shared)
    assert sum(variants.draw(loaded, i, b"k1") != variants.draw(other, i, b"k1") for i in ids) > 400


def test_the_secret_comes_from_the_environment_or_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv(variants.SECRET_ENV, " s3cret \n")
    assert variants.secret() == b"s3cret"
    path = tmp_path / "secret"
    path.write_text("from-file\n", encoding="utf-8")
    assert variants.secret(path) == b"from-file"
    monkeypatch.delenv(variants.SECRET_ENV)
    with pytest.raises(ConfigError, match="no course secret: set DAE_COURSE_SECRET"):
        variants.secret()


@pytest.mark.parametrize(
    "text, message",
    [
        ('profile = "quick"\n', "`assignment` = None must be a name"),
        ('assignment = "../up"\n', "`assignment` = '../up' must be a name"),
        ('assignment = "a b"\n', "`assignment` = 'a b' must be a name"),
        ('assignment = "a"\n[vary]\n"noise.std" = []\n', "must be a list of distinct values"),
        ('assignment = "a"\n[vary]\n"noise.std" = [0.3, 0.3]\n', "distinct values"),
        (
            'assignment = "a"\n[vary]\n"noise.std" = [0.3, -1.0]\n',
            "noise.std = -1.0 is out of range",
        ),
        ('assignment = "a"\n[vary]\n"noise.sdt" = [0.3]\n', "unknown config key 'noise.sdt'"),
        ('assignment = "a"\nstudents = 3\n', "unknown key 'students'"),
        ('assignment = "a"\n[vary\n', "is not valid TOML"),
    ],
)
def test_a_bad_variants_file_is_bad_input_before_any_work(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load(tmp_path, text)


def test_students_who_draw_the_same_settings_share_one_build(tmp_path):
    from pipeline.roster import Student

    loaded = load(tmp_path)
    students = [Student(f"s{n:03d}", f"Student {n}") for n in range(120)]
    digests = {"train-images-idx3-ubyte": "0" * 64}
    planned = variants.plan(loaded, students, b"k1", digests)
    assert len(planned) == 6  # 120 students, 3 × 2 settings: six builds
    assert sorted(s.id for v in planned for s in v.students) == [s.id for s in students]
    for variant in planned:
        assert all(variants.draw(loaded, s.id, b"k1") == variant.values for s in variant.students)
    assert len({variant.key for variant in planned}) == 6
    # Named by VARIANTS.toml's combinations, not by who comes first on the roster: a re-run
    # with a changed roster finds each variant's folder (and its cache) where it was.
    combinations = loaded.combinations()
    for variant in planned:
        assert combinations[int(variant.name[1:]) - 1] == variant.values
        assert variant.config.report.instructor_copy
    reversed_names = {
        v.name: v.values for v in variants.plan(loaded, students[::-1], b"k1", digests)
    }
    assert reversed_names == {variant.name: variant.values for variant in planned}


def test_a_varying_setting_the_build_does_not_depend_on_is_refused(tmp_path):
    from pipeline.roster import Student

    loaded = load(tmp_path)
    titles = variants.Variants(
        loaded.assignment, loaded.profile, {"report.title": ("A", "B")}, loaded.shared
    )
    with pytest.raises(ConfigError, match=r"vary\.'report\.title': 'A' and 'B' give the same lab"):
        variants.plan(titles, [Student("s1", "One")], b"k1", {"x": "0" * 64})
