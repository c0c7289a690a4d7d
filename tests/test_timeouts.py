"""The suite's hang guard works: a test that blocks is stopped with a timeout, not waited for."""

import subprocess
import sys


def test_a_hanging_test_is_stopped(tmp_path):
    (tmp_path / "test_hang.py").write_text("import time\n\ndef test_hang():\n    time.sleep(120)\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout=3", str(tmp_path / "test_hang.py")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert proc.returncode != 0
    assert "Timeout" in proc.stdout + proc.stderr
