"""Building and reading datasets never imports TensorFlow.

Checked in a fresh process: after a build and a read, no ``tensorflow`` module is loaded. This holds
whether or not TensorFlow is installed, so the check stays meaningful if it ever gets installed.
(Hiding TensorFlow with ``sys.modules["tensorflow"] = None`` or a raising import hook is not
faithful: TFDS takes the former for "already loaded" and probes with ``importlib.util.find_spec``.)
"""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]

SCRIPT = """
import sys
from rl import data
examples = data.load("math500", "test", data_dir=sys.argv[1])
toy = data.load("toy", "test", data_dir=sys.argv[1], train_size=20, test_size=10)
assert len(examples) == 500 and len(toy) == 10, (len(examples), len(toy))
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")
assert not loaded, loaded
print("ok")
"""


def test_build_and_read_without_tensorflow(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
