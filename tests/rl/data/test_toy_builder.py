"""The toy TFDS builder: row counts per configuration, rows equal to the generator's, cached by
parameters."""

from rl import data
from rl.data import toy
from rl.data.toy_builder import DEFAULT_TEST_SIZE, DEFAULT_TRAIN_SIZE, ToyArithmetic


def test_builder_row_counts_and_rows(data_dir):
    built = data.builder("toy", data_dir=data_dir, seed=5, train_size=600, test_size=64)
    assert built.info.splits["train"].num_examples == 600
    assert built.info.splits["test"].num_examples == 64
    test = data.load("toy", "test", data_dir=data_dir, seed=5, train_size=600, test_size=64)
    want = toy.generate("test", 64, seed=5)
    assert [(ex.id, ex.question, ex.solution, ex.answer) for ex in test] == [
        (r.id, r.problem.question, r.solution, str(r.problem.answer)) for r in want
    ]


def test_defaults_and_one_cache_directory_per_parameter_set(tmp_path):
    default = ToyArithmetic(data_dir=tmp_path)
    assert (DEFAULT_TRAIN_SIZE, DEFAULT_TEST_SIZE) == (20_000, 512)
    assert default.builder_config.name == (
        "seed0-train20000-test512-ops3to6-operand9-value99-redundant0.15"
    )
    other = ToyArithmetic(data_dir=tmp_path, spec=toy.ToySpec(redundant_step_prob=0.0))
    assert other.data_dir != default.data_dir
