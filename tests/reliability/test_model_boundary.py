"""Model code's side effects: nothing a model does to its inputs, to gmbench's shared data or to
the process around it (working directory, streams, signal handlers, sys.path, default device and
dtype, random generators, warnings, environment, recursion limit) reaches gmbench's data, its
results or the caller; patches of gmbench or a builtin are refused and undone; and every way
model code can end the process (exits, exit handlers, a keyboard interrupt, closed streams) or
outlive it (threads) is a clear error or is handled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_errors import assert_clear_error
from helpers import LEVELS, ROOT, evaluate_ok

import gmbench
from gmbench.datasets import get_dataset

# ------------------------------------------------------------------ what the model writes into
GAUSS = """
    import torch
    DATASET = "gauss-2"
    class M:
        def sample(self, n):
            return torch.randn(n, 2) * 1.1
        def log_prob(self, x):
            lp = torch.distributions.Normal(0.0, 1.1).log_prob(x).sum(1).double()
            {mutation}  # after scoring: the model's own value is untouched, gmbench's data?
            return lp
    model = M()
"""


@pytest.mark.parametrize("mutation", ["x *= 2", "x[:] = 0", "x.add_(1.0)"])
def test_a_model_writing_into_its_input_changes_nothing(write_model, gmbench_cli, mutation):
    clean = evaluate_ok(gmbench_cli, write_model(GAUSS.format(mutation="pass")),
                        "--metrics", "nll,mmd,cross_entropy", "--n-samples", "500")
    dirty = evaluate_ok(gmbench_cli, write_model(GAUSS.format(mutation=mutation)),
                        "--metrics", "nll,mmd,cross_entropy", "--n-samples", "500")
    assert dirty.results["dataset"]["sha256"] == clean.results["dataset"]["sha256"]
    for key in ("mmd", "cross_entropy"):
        assert dirty.metric(key)["value"] == clean.metric(key)["value"], key
    assert get_dataset("gauss-2").sha256 == clean.results["dataset"]["sha256"]


def test_integer_inputs_are_copies_too(write_model, gmbench_cli):
    source = """
        import math, torch
        DATASET = "markov-4"
        class M:
            def sample(self, n):
                return torch.randint(0, 4, (n, 64))
            def log_prob(self, x):
                {mutation}
                return torch.full((len(x),), -64 * math.log(4.0), dtype=torch.float64)
        model = M()
    """
    args = ("--metrics", "nll,perplexity,mmd", "--n-samples", "300")
    clean = evaluate_ok(gmbench_cli, write_model(source.format(mutation="pass")), *args)
    dirty = evaluate_ok(gmbench_cli, write_model(source.format(mutation="x[:] = 3")), *args)
    assert dirty.results["dataset"]["sha256"] == clean.results["dataset"]["sha256"]
    assert dirty.metric("mmd")["value"] == clean.metric("mmd")["value"]


def test_conditional_labels_are_the_models_own_copy(write_model, gmbench_cli):
    source = """
        import torch
        DATASET = "digits"
        class M:
            def sample(self, n):
                return torch.randint(0, 17, (n, 1, 8, 8))
            def sample_conditional(self, labels):
                out = torch.zeros(len(labels), 1, 8, 8, dtype=torch.long) + labels.view(-1, 1, 1, 1)
                {mutation}
                return out
        model = M()
    """
    args = ("--metrics", "cas", "--n-samples", "200")
    clean = gmbench_cli("evaluate", write_model(source.format(mutation="pass")), *args)
    dirty = gmbench_cli("evaluate", write_model(source.format(mutation="labels[:] = 0")), *args)
    assert clean.code == 0 and dirty.code == 0, dirty.err
    assert dirty.metric("cas")["value"] == clean.metric("cas")["value"]


def test_a_model_writing_into_the_shared_dataset_is_caught(write_model, gmbench_cli):
    path = write_model("""
        import torch
        from gmbench.datasets import get_dataset
        DATASET = "gauss-2"
        class M:
            def sample(self, n):
                get_dataset("gauss-2").test.x[:5] = 0.0  # the shared, cached arrays
                return torch.randn(n, 2)
        model = M()
    """)
    before = get_dataset("gauss-2").sha256
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50"),
                       "changed while the model ran")
    assert get_dataset("gauss-2").sha256 == before  # the cache was dropped and reloaded


def test_what_load_does_to_its_dataset_description_stays_with_the_model(write_model,
                                                                          gmbench_cli):
    """`object.__setattr__(dataset, "levels", 2)` in load() used to change gmbench's own
    description, and the model's valid samples were then refused as out of range."""
    path = write_model("""
        import torch
        DATASET = "digits"
        class M:
            def sample(self, n):
                return torch.randint(0, 17, (n, 1, 8, 8))
        def load(dataset, device):
            object.__setattr__(dataset, "levels", 2)
            return M()
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "copy_rate", "--n-samples", "300")
    assert run.code == 0, run.err
    assert run.results["dataset"]["levels"] == 17 and run.metric("copy_rate")["value"] is not None


# ------------------------------------------------------------------ the process around the model
def test_process_state_the_model_changes_is_restored(write_model, gmbench_cli):
    """A model file that sets float64 as the default dtype, reseeds the global generators and
    changes the thread count, at import and in every call: gmbench runs normally and the
    process is as it was."""
    path = write_model("""
        import random
        import numpy as np
        import torch
        torch.set_default_dtype(torch.float64)
        DATASET = "digits"
        class M:
            def sample(self, n):
                torch.set_default_dtype(torch.float64)
                torch.manual_seed(1); np.random.seed(1); random.seed(1)
                torch.set_num_threads(1)
                return torch.randint(0, 17, (n, 1, 8, 8))
            def log_prob(self, x):
                torch.set_grad_enabled(True)
                return torch.full((len(x),), -181.3, dtype=torch.float64)
        model = M()
    """)
    before = (torch.get_default_dtype(), torch.random.get_rng_state().clone(),
              np.random.get_state()[1].copy(), torch.get_num_threads(), torch.is_grad_enabled())
    evaluate_ok(gmbench_cli, path, "--metrics", "nll,fid,precision,cas", "--n-samples", "200")
    after = (torch.get_default_dtype(), torch.random.get_rng_state(), np.random.get_state()[1],
             torch.get_num_threads(), torch.is_grad_enabled())
    assert after[0] == before[0] == torch.float32
    assert torch.equal(after[1], before[1]) and np.array_equal(after[2], before[2])
    assert after[3:] == before[3:]


def test_process_state_is_restored_after_model_code(write_model, gmbench_cli, tmp_path,
                                                    monkeypatch):
    elsewhere, start = tmp_path / "elsewhere", tmp_path / "start"
    elsewhere.mkdir()
    start.mkdir()
    monkeypatch.chdir(start)
    path = write_model(f"""
        import io, os, signal, sys, torch
        DATASET = "gauss-2"
        def load(dataset, device):
            os.chdir({str(elsewhere)!r})
            sys.stdout = io.StringIO()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            sys.path.clear()
            torch.set_default_device("meta")
            class M:
                def sample(self, n):
                    return torch.randn(n, 2, device="cpu")
            return M()
    """)
    cwd, stdout, handler, path_before = (os.getcwd(), sys.stdout,
                                         signal.getsignal(signal.SIGTERM), list(sys.path))
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50",
                      "--out", "relative-out")
    assert run.code == 0, run.err
    assert os.getcwd() == cwd and sys.stdout is stdout
    assert signal.getsignal(signal.SIGTERM) is handler and sys.path == path_before
    assert torch.get_default_device() == torch.device("cpu")
    assert (start / "relative-out" / "results.json").is_file()  # not under elsewhere/
    assert not (elsewhere / "relative-out").exists()


DIGITS_MODEL = """
    import torch, numpy as np
    DATASET = "digits"
    {module}
    class M:
        def sample(self, n):
            {sample}
            return torch.randint(0, 17, (n, 1, 8, 8))
    model = M()
"""


def digits_model(module: str = "", sample: str = "pass") -> str:
    return DIGITS_MODEL.format(module=module, sample=sample)


@pytest.mark.parametrize("change, state", [
    ("np.seterr(all='raise')", lambda: np.geterr()),
    ("import warnings; warnings.simplefilter('error')", lambda: list(__import__("warnings").filters)),
    ("import os; os.environ['GMBENCH_BOARDS'] = '/elsewhere'; os.environ.pop('HOME', None)",
     lambda: dict(__import__("os").environ)),
    ("torch.use_deterministic_algorithms(True)",
     lambda: torch.are_deterministic_algorithms_enabled()),
    ("import sys; sys.setrecursionlimit(sys.getrecursionlimit() + 12345)",
     lambda: __import__("sys").getrecursionlimit()),
])
@pytest.mark.parametrize("where", ["module", "sample"])
def test_process_state_a_model_changes_is_restored_for_the_caller(write_model, change, state,
                                                                  where):
    """A training loop calling gmbench.evaluate gets its process back as it was."""
    before = state()
    path = write_model(digits_model(**{where: change}))
    res = gmbench.evaluate(str(path), metrics=["copy_rate"], n_samples=300, progress=False)
    assert res["copy_rate"].value is not None
    assert state() == before


def test_a_model_file_that_lowers_the_recursion_limit_still_runs(write_model, gmbench_cli):
    path = write_model(digits_model(module="import sys; sys.setrecursionlimit(60)"))
    run = gmbench_cli("evaluate", path, "--metrics", "copy_rate", "--n-samples", "300")
    assert run.code == 0 and "Traceback" not in run.err, run.err
    assert sys.getrecursionlimit() > 60


def test_loading_an_extractor_leaves_the_global_rng_alone():
    from gmbench.features.classifier import _load, classifier_for

    _load.cache_clear()
    state = torch.random.get_rng_state().clone()
    classifier_for("digits")
    assert torch.equal(torch.random.get_rng_state(), state)


# ------------------------------------------------------------------ patches
@pytest.mark.parametrize("patch, name", [
    ("import builtins; builtins.print = lambda *a, **k: None", "builtins.print"),
    ("import gmbench.metrics.likelihood as L; L.nll_estimate = lambda ev: None",
     "gmbench.metrics.likelihood.nll_estimate"),
    # the numerical libraries the estimators call: mmd's bandwidth is a median
    ("import numpy; numpy.median = lambda *a, **k: 1.0", "numpy.median"),
    ("import numpy; numpy.exp = numpy.sqrt", "numpy.exp"),
])
@pytest.mark.parametrize("where", ["module", "sample"])
def test_a_model_that_patches_gmbench_or_a_builtin_is_refused(write_model, gmbench_cli, patch,
                                                              name, where):
    import builtins

    import gmbench.metrics.likelihood as likelihood

    originals = (builtins.print, likelihood.nll_estimate, np.median, np.exp)
    path = write_model(digits_model(**{where: patch}))
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "copy_rate", "--n-samples",
                                   "300"), name, "may not patch")
    assert (builtins.print, likelihood.nll_estimate, np.median, np.exp) == originals


def test_a_patch_is_undone_when_the_model_then_fails(write_model, gmbench_cli):
    import builtins

    original = builtins.print
    path = write_model(digits_model(sample="import builtins; builtins.print = None; "
                                           "raise RuntimeError('broken')"))
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "copy_rate"),
                       "raised RuntimeError: broken")
    assert builtins.print is original


# ------------------------------------------------------------------ ending the process
EXITS = {
    "sys.exit(0) in load": ("import sys\ndef load(dataset, device):\n    sys.exit(0)\n",
                            "`load(dataset, device)` called sys.exit(0)"),
    "sys.exit in sample": ("import sys\nclass M:\n    def sample(self, n):\n        sys.exit(3)"
                           "\nmodel = M()\n", "`sample` called sys.exit(3)"),
    "os._exit in log_prob": ("import os, torch\nclass M:\n    def log_prob(self, x):\n"
                             "        os._exit(0)\nmodel = M()\n", "`log_prob` called os._exit(0)"),
    "os._exit at import": ("import os\nos._exit(0)\n", "called os._exit(0)"),
    "BaseException subclass": ("class Stop(BaseException):\n    pass\nclass M:\n"
                               "    def sample(self, n):\n        raise Stop('halt')\n"
                               "model = M()\n", "`sample` raised Stop: halt"),
}


@pytest.mark.parametrize("case", list(EXITS))
def test_model_code_that_ends_the_process_is_an_error_not_a_success(case, tmp_path):
    """Run in a child process: were os._exit not caught, it would end the test run."""
    source, message = EXITS[case]
    path = tmp_path / "exits.py"
    path.write_text('DATASET = "digits"\n' + source)
    proc = subprocess.run([sys.executable, "-m", "gmbench.cli", "evaluate", str(path),
                           "--out", str(tmp_path / "out"), "--metrics", "nll,mmd",
                           "--n-samples", "50"],
                          capture_output=True, text=True, timeout=300)
    metrics_needing = "needs log_prob" in proc.stderr or "needs sample" in proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert metrics_needing or message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "results.json").exists()


def test_posix_exit_is_refused_like_os_exit(write_model, gmbench_cli):
    path = write_model("""
        import posix, torch
        DATASET = "gauss-2"
        class M:
            def sample(self, n):
                posix._exit(0)
        model = M()
    """)
    assert_clear_error(gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50"),
                       "os._exit(0)")


def test_keyboard_interrupt_still_interrupts(write_model, gmbench_cli):
    path = write_model("""
        DATASET = "digits"
        class M:
            def sample(self, n):
                raise KeyboardInterrupt
        model = M()
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50")
    assert run.code == 130 and "interrupted" in run.err


def test_an_exit_handler_cannot_turn_a_failed_run_into_success(write_model, tmp_path):
    path = write_model("""
        import atexit, os
        atexit.register(lambda: os._exit(0))
        DATASET = "digits"
        class M:
            def sample(self, n):
                return "not samples"
        model = M()
    """)
    proc = subprocess.run([sys.executable, "-m", "gmbench.cli", "evaluate", str(path),
                           "--metrics", "copy_rate", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "returned a str" in proc.stderr and "Traceback" not in proc.stderr
    assert "exit handler" in proc.stderr and "os._exit(0)" in proc.stderr


def test_a_model_that_deletes_its_working_directory_or_closes_stdout_still_finishes(
        write_model, tmp_path):
    path = write_model(digits_model(sample=(
        "import os, sys, tempfile, shutil; d = tempfile.mkdtemp(); os.chdir(d); "
        "shutil.rmtree(d); sys.stdout.close(); sys.stderr.close()")))
    proc = subprocess.run([sys.executable, "-m", "gmbench.cli", "evaluate", str(path),
                           "--metrics", "copy_rate", "--n-samples", "300", "--out",
                           str(tmp_path / "out")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "copy_rate" in proc.stdout and "Traceback" not in proc.stderr
    assert json.loads((tmp_path / "out" / "results.json").read_text())["metrics"]["copy_rate"]


# ------------------------------------------------------------------ output streams, threads and imports
def test_json_stdout_stays_json_when_the_model_prints(write_model, gmbench_cli):
    path = write_model("""
        import torch
        print("hello at import")
        DATASET = "gauss-2"
        class M:
            def sample(self, n):
                print("hello from sample")
                return torch.randn(n, 2)
        model = M()
    """)
    run = gmbench_cli("evaluate", path, "--metrics", "mmd", "--n-samples", "50", "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["metrics"]["mmd"]["value"] is not None
    assert "hello from sample" in run.err and "hello at import" in run.err


CLI = [sys.executable, "-m", "gmbench.cli"]


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


def test_a_stray_thread_does_not_keep_the_command_alive(tmp_path):
    model = tmp_path / "threads.py"
    model.write_text("import threading, time, torch\nDATASET = 'gauss-2'\n"
                     "class M:\n    def sample(self, n):\n"
                     "        threading.Thread(target=time.sleep, args=(600,)).start()\n"
                     "        return torch.randn(n, 2)\nmodel = M()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    proc = subprocess.run([sys.executable, "-m", "gmbench", "evaluate", str(model), "--metrics",
                           "mmd", "--n-samples", "50", "--quiet", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "left 1 thread(s) running" in proc.stderr
    assert (tmp_path / "o" / "results.json").is_file()


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
