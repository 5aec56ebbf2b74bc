"""Cases found by a fourth round of probes (issue 12): output that bypasses Python's
``sys.stdout``, threads printing across the boundary, lazy imports of a model's own modules,
API options given as iterators, NumPy integers or ``None``, mixed PNG bit depths, an output
folder that is the working directory, and numbers beyond the float range."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_errors import assert_clear_error

import gmbench
from gmbench.api import OptionError
from gmbench.errors import ModelError

CLI = [sys.executable, "-m", "gmbench.cli"]
LEVELS = "torch.randint(0, 17, (n, 1, 8, 8))"


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_subprocess_output_of_a_model_stays_out_of_the_json_document(write_model, tmp_path):
    path = write_model(f"""
        import subprocess, torch
        DATASET = "digits"
        class M:
            def sample(self, n):
                subprocess.run(["echo", "git-rev: abc123"])
                return {LEVELS}
        model = M()
    """)
    proc = _run("evaluate", path, "--n-samples", "300", "--metrics", "copy_rate", "--json",
                "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["metrics"]["copy_rate"]["value"] is not None
    assert "git-rev: abc123" in proc.stderr


def test_a_thread_that_prints_across_model_calls_does_not_crash_gmbench(write_model, tmp_path):
    """A heartbeat thread printing while gmbench entered and left model code segfaulted."""
    path = write_model("""
        import math, threading, time, torch
        DATASET = "digits"
        def heartbeat():
            while True:
                print("alive"); time.sleep(0.0005)
        class M:
            started = False
            def log_prob(self, x):
                if not self.started:
                    threading.Thread(target=heartbeat, daemon=True).start()
                    self.started = True
                return torch.full((len(x),), -64 * math.log(17), dtype=torch.float64)
        model = M()
    """)
    for _ in range(2):
        proc = _run("evaluate", path, "--metrics", "nll", "--batch-size", "1", "--quiet",
                    "--out", tmp_path / "o")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


def test_a_model_importing_its_sibling_module_lazily_works_from_any_folder(tmp_path):
    folder = tmp_path / "mymodel"
    folder.mkdir()
    (folder / "mynet.py").write_text(
        f"import torch\nclass Net:\n    def sample(self, n):\n        return {LEVELS}\n")
    (folder / "model.py").write_text(
        'DATASET = "digits"\ndef load(dataset, device):\n    from mynet import Net\n'
        "    return Net()\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = _run("evaluate", folder / "model.py", "--n-samples", "300", "--metrics",
                "copy_rate", "--quiet", "--out", elsewhere / "o", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert str(folder) not in sys.path


def test_api_options_as_iterators_numpy_integers_or_none(write_model):
    class Levels:
        def sample(self, n):
            return torch.randint(0, 17, (n, 1, 8, 8))

    res = gmbench.evaluate(Levels(), dataset="digits", progress=False,
                           metrics=map(str.strip, ["copy_rate", " mmd"]),
                           n_samples=np.int64(300), seed=np.int32(3))
    assert sorted(res.metrics) == ["copy_rate", "mmd"] and res.document["seed"] == 3
    for option in ("device", "feature_extractor"):
        with pytest.raises(OptionError, match=f"{option} must be a string"):
            gmbench.evaluate(Levels(), dataset="digits", progress=False, **{option: None})
    with pytest.raises(OptionError, match="metrics must be a list"):
        res.check(Path("unused.csv"), metrics="mmd")


def test_an_object_whose_name_or_weights_raise_gets_a_model_error():
    class Named:
        @property
        def NAME(self):  # noqa: N802 - the contract's attribute
            raise RuntimeError("config not loaded")

        def sample(self, n):
            return torch.randint(0, 17, (n, 1, 8, 8))

    class Broken(torch.nn.Module):
        def state_dict(self, *a, **k):
            raise RuntimeError("custom state_dict failed")

        def sample(self, n):
            return torch.randint(0, 17, (n, 1, 8, 8))

    with pytest.raises(ModelError, match="reading `NAME` raised RuntimeError"):
        gmbench.evaluate(Named(), dataset="digits", progress=False, metrics=["copy_rate"])
    with pytest.raises(ModelError, match="hashing the model's weights.*custom state_dict"):
        gmbench.evaluate(Broken(), dataset="digits", progress=False, metrics=["copy_rate"])


def test_a_png_folder_mixing_bit_depths_is_refused(tmp_path):
    from PIL import Image

    from gmbench.datasets import get_dataset

    digits = get_dataset("digits").test.x[:30, 0]
    for i, img in enumerate(digits):
        Image.fromarray(img.astype(np.uint8)).save(tmp_path / f"{i:02d}.png")
    Image.fromarray(digits[0].astype(np.uint16) * 4096).save(tmp_path / "99.png")
    with pytest.raises(ModelError, match="1 of the 31 images are 16-bit.*one bit depth"):
        gmbench.evaluate(samples=tmp_path, dataset="digits", progress=False)


def test_the_working_directory_is_refused_as_the_output_folder(write_model, gmbench_cli,
                                                               tmp_path, monkeypatch):
    path = write_model(f"""
        import torch
        DATASET = "digits"
        class M:
            def sample(self, n):
                return {LEVELS}
        model = M()
    """)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for out in (".", ".."):
        run = gmbench_cli("evaluate", path, "--n-samples", "300", "--metrics", "copy_rate",
                          "--out", out)
        assert_clear_error(run, "is the current folder or one holding it")
    assert work.is_dir() and Path.cwd() == work


def test_numbers_beyond_the_float_range_are_not_estimable_not_a_traceback(write_model,
                                                                           gmbench_cli):
    tiny = write_model("""
        import torch
        DATASET = "digits"
        class M:
            def log_prob(self, x):
                return torch.full((len(x),), -1e5, dtype=torch.float64)
        model = M()
    """)
    run = gmbench_cli("evaluate", tiny, "--metrics", "nll,perplexity")
    assert run.code == 0, run.err
    assert run.metric("nll")["value"] == pytest.approx(1e5)
    assert run.metric("perplexity")["value"] is None
    huge = write_model("""
        import torch
        DATASET = "digits"
        log_prob_space = "dequantized"
        class M:
            log_prob_space = "dequantized"
            def log_prob(self, x):
                return torch.full((len(x),), 1000.0, dtype=torch.float64)
        model = M()
    """)
    run = gmbench_cli("evaluate", huge, "--metrics", "nll")
    assert run.code == 0, run.err
    assert "sums to more than e^" in run.metric("nll")["not_estimable"]


def test_option_messages_say_what_is_wrong(tmp_path, gmbench_cli):
    from gmbench.errors import BoardError
    from gmbench.gate.check import parse_tolerances

    for bad in ("nll=-1", "nll=inf", "nll=nan"):
        with pytest.raises(BoardError, match="negative, infinite and nan values are refused"):
            parse_tolerances([bad])
    assert_clear_error(gmbench_cli("leaderboard", "add", tmp_path / "r.json", "--board", ""),
                       "--board is empty")


def test_a_results_file_with_a_byte_order_mark_is_read(tmp_path):
    from gmbench.storage.results import read_results

    example = Path(__file__).resolve().parents[1] / "data" / "v0.1" / "minimal-digits-results.json"
    with_bom = tmp_path / "bom.json"
    with_bom.write_bytes(b"\xef\xbb\xbf" + example.read_bytes())
    assert read_results(with_bom) == read_results(example)


def test_a_huge_exception_message_is_cut(write_model, gmbench_cli):
    path = write_model("""
        DATASET = "digits"
        class M:
            def sample(self, n):
                raise ValueError("x" * 200_000)
        model = M()
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "copy_rate")
    assert_clear_error(run, "200000 characters in all")
    assert len(run.err) < 5000
