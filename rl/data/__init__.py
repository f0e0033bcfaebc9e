"""The data layer: datasets as ``Example`` lists, resumable prompt batches, prompt formatting, toy
task.

    from rl import data
    examples = data.load("gsm8k", "train")
    mine = data.load_files("my_problems.parquet", "train", question_field="problem")
    it = data.PromptIterator(examples, batch_size=64, seed=0)
    batch = data.prompts.encode_prompts(next(it), tokenizer, max_prompt_len=256,
                                        system_prompt=data.prompts.system_prompt_for("gsm8k"))

See rl/data/README.md for the datasets, the toy task and the choices made.
"""

from rl.data import prompts, toy
from rl.data.example import Example
from rl.data.load import DATASETS, builder, load, load_files, load_split
from rl.data.prompt_iterator import PromptIterator
from rl.data.rows import DataError

__all__ = [
    "DATASETS",
    "DataError",
    "Example",
    "PromptIterator",
    "builder",
    "load",
    "load_files",
    "load_split",
    "prompts",
    "toy",
]
