"""``--isolate``: the model runs in worker processes (:mod:`gmbench.models.isolated`). The same
numbers as in-process; a model that hangs, leaves processes behind, reaches for the network or
for the test split, floods memory or dies is stopped with exit 2 and a message naming the
call and the limit, and nothing of gmbench's is changed."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from gmbench_baselines import BASELINES
from helpers import hooked_model

from gmbench.datasets import get_dataset
from gmbench.models.isolated import (
    Limits,
    View,
    _Cgroup,
    _unshare_prefix,
    bubblewrap,
    parse_size,
)
from gmbench.models.wire import ChannelError, read_message, write_message

ROOT = Path(__file__).resolve().parents[2]
def results(run) -> dict:
    return json.loads((run.dir / "results.json").read_text())


# every digits baseline; a few with more members crossing the channel
METRICS = {"memorizer": "nll,fid,precision,copy_rate", "vae": "nll,fid",
           "ae": "fid,reconstruction_error", "ae_conditional": "cas", "gan": "fid,mmd"}
DIGITS_BASELINES = [b.name for b in BASELINES.values() if "digits" in b.datasets]


@pytest.mark.parametrize("family", DIGITS_BASELINES)
def test_isolated_and_in_process_runs_give_identical_values(gmbench_cli, family):
    """The memorizer reads the training split through get_dataset (the worker's copy); the
    VAE's IWAE draws noise in log_prob; the autoencoder's reconstructions cross the channel
    as encode's code kept in the worker, then decode."""
    metrics = METRICS.get(family, "nll,fid")
    model = ROOT / "baselines" / f"{family}.py"
    inside = gmbench_cli("evaluate", model, "--dataset", "digits", "--metrics", metrics,
                         "--n-samples", "500")
    isolated = gmbench_cli("evaluate", model, "--dataset", "digits", "--metrics", metrics,
                           "--n-samples", "500", "--isolate")
    assert inside.code == 0 and isolated.code == 0, isolated.err
    a, b = results(inside)["metrics"], results(isolated)["metrics"]
    assert a.keys() == b.keys() and len(a) >= 1
    for key in a:
        assert a[key]["value"] == b[key]["value"], (key, a[key]["value"], b[key]["value"])
    iso = results(isolated)["provenance"]["isolation"]
    assert iso["isolated"] is True and "isolation" not in results(inside)["provenance"]


def test_a_model_that_sleeps_past_its_timeout_is_stopped(gmbench_cli, tmp_path):
    path = hooked_model(tmp_path, sample="import time; time.sleep(300)")
    started = time.monotonic()
    run = gmbench_cli("evaluate", path, "--metrics", "fid", "--isolate", "--timeout", "3")
    assert run.code == 2
    assert "`sample` did not finish within the time limit (--timeout 3 s)" in run.err, run.err
    assert time.monotonic() - started < 60
    assert not (run.dir / "results.json").exists()


def test_the_processes_a_model_starts_end_with_its_worker(gmbench_cli, tmp_path):
    # the child is found by its unique command line (its pid is the sandbox's own, if any)
    mark = f"{300 + os.getpid() % 1000 / 1000:.3f}"
    path = hooked_model(tmp_path, load=f"import subprocess; subprocess.Popen(['sleep', "
                                     f"'{mark}'])")
    run = gmbench_cli("evaluate", path, "--metrics", "nll", "--isolate")
    assert run.code == 0, run.err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _running(mark):
        time.sleep(0.1)
    assert not _running(mark), "the model's child process outlived the evaluation"


def _running(mark: str) -> list[int]:
    """The live processes running ``sleep <mark>``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
            cmd = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if state != "Z" and cmd[:2] == [b"sleep", mark.encode()]:
            found.append(int(stat.parent.name))
    return found


def test_a_model_cannot_reach_the_network(gmbench_cli, tmp_path):
    if not _unshare_prefix():
        pytest.skip("no network namespace here (unshare)")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []

    def accept() -> None:
        end = time.monotonic() + 20
        while time.monotonic() < end and not accepted:
            with contextlib.suppress(OSError):
                accepted.append(server.accept())

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    path = hooked_model(tmp_path, load=f"import socket; socket.create_connection(('127.0.0.1', "
                                     f"{port}), timeout=5)")
    run = gmbench_cli("evaluate", path, "--metrics", "nll", "--isolate")
    thread.join(timeout=1)
    server.close()
    assert run.code == 2 and "`load(dataset, device)` raised" in run.err, run.err
    assert not accepted, "the model connected to this machine's network"


def test_the_test_split_is_out_of_the_models_reach(gmbench_cli, tmp_path):
    """In the worker, ``get_dataset`` gives the training split and an empty test split; a
    model that looks for the test split finds nothing to copy."""
    path = hooked_model(tmp_path, load="""d = get_dataset(dataset.name)
    assert len(d.train.x) == 1437 and d.train.y is not None, len(d.train.x)
    if len(d.test.x):
        raise RuntimeError(f"the test split is here: {len(d.test.x)} images")""")
    inside = gmbench_cli("evaluate", path, "--metrics", "nll")
    assert inside.code == 2 and "the test split is here: 360 images" in inside.err
    isolated = gmbench_cli("evaluate", path, "--metrics", "nll,copy_rate", "--isolate")
    assert isolated.code == 0, isolated.err


SANDBOX = pytest.mark.skipif(bubblewrap() is None, reason="bubblewrap (bwrap) is not installed "
                             "or cannot create its namespaces here: apt-get install bubblewrap")


@SANDBOX
def test_in_the_sandbox_datasets_are_hidden_and_gmbench_files_out_of_reach(
        gmbench_cli, tmp_path, monkeypatch):
    """Reading the dataset files (digits' source, /usr/share/datasets), gmbench's folders,
    writing a board, the feature cache or the model's own folder: nothing reaches the real
    files. The model reports what it could do; an evaluation that finishes is the verdict."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "gmbench" / "features"
    cache.mkdir(parents=True)
    board = tmp_path / "board.csv"
    board.write_bytes((ROOT / "leaderboards" / "digits.csv").read_bytes())
    before = board.read_bytes()
    import sklearn.datasets
    digits_csv = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
    assert digits_csv.is_file()
    path = hooked_model(tmp_path, load=f"""import os
    reached = []
    def attempt(what, action):
        try:
            action()
            reached.append(what)
        except OSError:
            pass
    attempt("digits source", lambda: open({str(digits_csv)!r}, "rb").read(1))
    def listing(folder):
        if not os.listdir(folder):
            raise OSError("empty")
    def seen(word):
        for cmd in os.listdir("/proc"):
            if cmd.isdigit() and word in open(f"/proc/{{cmd}}/cmdline", "rb").read():
                return
        raise OSError("not seen")
    attempt("system datasets", lambda: listing("/usr/share/datasets"))
    attempt("gmbench's boards", lambda: os.listdir({str(ROOT / "leaderboards")!r}))
    attempt("a board written", lambda: open({str(board)!r}, "a").write("x"))
    attempt("own folder written", lambda: open({str(tmp_path / "mine.txt")!r}, "w").write("x"))
    try:  # the cache is hidden behind an empty folder: a write fails or lands there
        open({str(cache / "planted.safetensors")!r}, "w").write("x")
    except OSError:
        pass
    attempt("gmbench's process", lambda: seen(b"\\x00pytest\\x00"))
    if reached:
        raise RuntimeError("reached: " + ", ".join(reached))""")
    run = gmbench_cli("evaluate", path, "--metrics", "nll", "--isolate")
    assert run.code == 0, run.err
    assert board.read_bytes() == before and not (tmp_path / "mine.txt").exists()
    assert list(cache.iterdir()) == []
    assert "bubblewrap" in results(run)["provenance"]["isolation"]["sandbox"]


@SANDBOX
def test_a_model_writing_outside_its_working_folder_is_a_verdict(gmbench_cli, tmp_path):
    board = tmp_path / "board.csv"
    board.write_text("model,metric\n")
    path = hooked_model(tmp_path, sample=f"open({str(board)!r}, 'a').write('evil,1\\n')")
    run = gmbench_cli("evaluate", path, "--metrics", "fid", "--isolate")
    assert run.code == 2 and "`sample` raised OSError" in run.err, run.err
    assert "Read-only file system" in run.err and board.read_text() == "model,metric\n"


@SANDBOX
def test_the_hosting_recipe_keeps_the_good_and_names_the_bad(gmbench_cli, tmp_path):
    """docs/boards.md's recipe: a folder of submissions swept under --isolate with limits; a
    sleeping submission and one that writes into its folder fail alone, named; the board holds
    the good one's rows only (the board written from the sandbox is a file of its own /tmp)."""
    subs = tmp_path / "submissions"
    for name in ("alice", "carol", "dave"):
        (subs / name).mkdir(parents=True)
    (subs / "alice" / "model.py").write_bytes((ROOT / "examples" / "minimal_model.py").read_bytes())
    hooked_model(subs / "carol", sample="import time; time.sleep(120)", name="model.py")
    board = tmp_path / "hosted.csv"
    hooked_model(subs / "dave", load=f"open({str(board)!r}, 'a').write('evil')\n    "
                 f"open({str(subs / 'dave' / 'cache.bin')!r}, 'w')", name="model.py")
    run = gmbench_cli("sweep", *sorted(subs.glob("*/model.py")), "--datasets", "digits",
                      "--board", board, "--out", tmp_path / "runs", "--isolate", "--timeout", "10",
                      "--memory", "2G", "--serial", "--metrics", "nll,fid")
    assert run.code == 1, run.err
    assert "evil" not in board.read_text()
    rows = board.read_text().splitlines()[1:]
    assert sorted({r.split(",")[1] for r in rows}) == ["alice"] and len(rows) == 2
    jobs = {Path(j["model"]).parent.name: j
            for j in json.loads((tmp_path / "runs" / "sweep.json").read_text())["jobs"]}
    assert jobs["alice"]["status"] == "done"
    assert "--timeout 10 s" in jobs["carol"]["error"], jobs["carol"]
    assert "Read-only file system" in jobs["dave"]["error"], jobs["dave"]


def test_the_sandbox_view_hides_the_dataset_files_beside_the_model(tmp_path):
    """An own dataset in the model's folder is replaced by an empty file; the folder is
    read-only; gmbench's boards are not in the view (a worker sees no dataset file)."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "pts.npz", x_train=rng.normal(size=(50, 2)),
             x_test=rng.normal(size=(20, 2)))
    (tmp_path / "model.py").write_text("WEIGHTS = ['../w/a.safetensors']\n")
    (tmp_path.parent / "w").mkdir(exist_ok=True)
    (tmp_path.parent / "w" / "a.safetensors").write_bytes(b"0")
    data = get_dataset(str(tmp_path / "pts.npz"))
    view = View.of(tmp_path / "model.py", data)
    real = os.path.realpath
    assert real(tmp_path) in view.readable
    assert real(tmp_path.parent / "w" / "a.safetensors") in view.readable
    assert real(tmp_path / "pts.npz") in view.hidden
    assert not any(real(ROOT / "leaderboards").startswith(p.rstrip("/") + "/")
                   or real(ROOT / "leaderboards") == p for p in view.readable)
    argv = view.argv("bwrap", "/tmp/work", network=False)
    hide = argv.index(real(tmp_path / "pts.npz"))
    assert argv[hide - 2:hide] == ["--ro-bind", "/dev/null"]
    assert hide > argv.index(real(tmp_path))  # mounted over the folder's bind
    assert "--share-net" not in argv and argv[argv.index("--uid") + 1] == "65534"
    assert "/sys" not in argv and "/sys" in view.argv("bwrap", "/tmp/work", network=True,
                                                      gpu=True)


def test_a_model_past_its_memory_limit_is_stopped(gmbench_cli, tmp_path):
    probe = _Cgroup(Limits(memory=1 << 30))
    probe.remove()
    if not probe.kind:
        pytest.skip("no cgroup may be created here (the limit is RLIMIT_DATA)")
    path = hooked_model(tmp_path, load="x = np.ones(3 * 2**30 // 8)")  # 3 GiB, written
    run = gmbench_cli("evaluate", path, "--metrics", "nll", "--isolate", "--memory", "512M")
    assert run.code == 2
    assert "worker was killed by SIGKILL during `load(dataset, device)`" in run.err, run.err
    assert "exceeded the memory limit, --memory 536,870,912 bytes" in run.err


def test_a_worker_that_dies_is_a_verdict_not_a_crash(gmbench_cli, tmp_path):
    """(``os._exit`` is refused in the worker as in-process; a signal is not.)"""
    path = hooked_model(tmp_path, sample="import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    run = gmbench_cli("evaluate", path, "--metrics", "fid", "--isolate")
    assert run.code == 2
    assert "the model's worker was killed by SIGKILL during `sample`" in run.err, run.err


def test_what_a_model_prints_stays_off_the_json(tmp_path):
    import subprocess
    import sys

    path = hooked_model(tmp_path, load="print('hello from load')",
                      sample="print('hello from sample')")
    out = subprocess.run([sys.executable, "-m", "gmbench", "evaluate", str(path), "--metrics",
                          "nll,fid", "--isolate", "--json", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["metrics"]["fid"]["value"] > 0
    assert "hello from sample" in out.stderr and "hello from load" in out.stderr


def test_isolate_options_are_checked(gmbench_cli, tmp_path):
    path = hooked_model(tmp_path)
    run = gmbench_cli("evaluate", path, "--memory", "1G")
    assert run.code == 2 and "add --isolate" in run.err
    run = gmbench_cli("evaluate", path, "--isolate", "--memory", "lots")
    assert run.code == 2 and "'lots' is not a size" in run.err
    run = gmbench_cli("evaluate", path, "--isolate", "--timeout", "-1")
    assert run.code == 2 and "--timeout must be a positive number of seconds" in run.err
    assert parse_size("2G") == 2 * 2**30 and parse_size("512m") == 512 * 2**20


def test_the_channel_refuses_what_it_cannot_carry():
    r, w = os.pipe()
    try:
        write_message(w, {"x": 1}, [np.arange(3, dtype=np.int16), np.zeros((2, 2))])
        header, arrays = read_message(r, max_bytes=1000)
        assert header["x"] == 1 and arrays[0].tolist() == [0, 1, 2]
        assert arrays[1].shape == (2, 2) and arrays[1].flags.writeable
        with pytest.raises(ChannelError, match="cannot cross"):
            write_message(w, {}, [np.array(["a"])])
        # a peer that claims 10^12 values is refused before anything is allocated
        head = json.dumps({"arrays": [{"dtype": "float64", "shape": [10**6, 10**6]}]}).encode()
        os.write(w, len(head).to_bytes(8, "little") + head)
        with pytest.raises(ChannelError, match="more than 1,000 bytes"):
            read_message(r, max_bytes=1000)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("where", ["load", "sample"])
def test_timeout_alone_stops_a_sleeping_model(gmbench_cli, tmp_path, where):
    """Without --isolate the limit is a signal in gmbench's process: it interrupts a sleep."""
    path = hooked_model(tmp_path, **{where: "import time; time.sleep(300)"})
    started = time.monotonic()
    run = gmbench_cli("evaluate", path, "--metrics", "fid", "--timeout", "2")
    assert run.code == 2, run.err
    call = "`load(dataset, device)`" if where == "load" else "`sample`"
    assert f"{call} did not finish within the time limit (--timeout 2 s)" in run.err, run.err
    assert time.monotonic() - started < 30
    ok = gmbench_cli("evaluate", hooked_model(tmp_path, name="fine.py"), "--metrics", "nll",
                     "--timeout", "60")
    assert ok.code == 0, ok.err
