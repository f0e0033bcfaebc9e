"""MATH500: 500 rows with subject and level, ids from the source's unique_id."""

from rl import data


def test_real_file_gives_500_rows_with_subject_and_level(data_dir):
    examples = data.load("math500", "test", data_dir=data_dir)
    assert len(examples) == 500
    assert len({ex.id for ex in examples}) == 500
    first = examples[0]
    assert first.id == "math500/test/precalculus/807.json"
    assert first.question.startswith("Convert the point $(0,3)$ in rectangular coordinates")
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert "\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}" in first.solution
    assert first.meta == {"subject": "Precalculus", "level": 2}
    assert {ex.meta["level"] for ex in examples} == {1, 2, 3, 4, 5}
    assert len({ex.meta["subject"] for ex in examples}) == 7
