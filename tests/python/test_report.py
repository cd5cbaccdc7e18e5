"""``fisherkit report`` and its pieces: the SciPy operators, the file readers, the report
end to end from every input format, the page, its numbers, bad inputs, the time limit,
Ctrl-C, the plots, and a headless-Chromium rendering of the page."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser

import numpy as np
import pytest

import fisherkit as fk
from fisherkit import _report_sections
from fisherkit._data import ColumnView, InputError, load_data, load_model
from fisherkit.cli import main
from interrupts import sigint_as_at_a_terminal

spla = pytest.importorskip("scipy.sparse.linalg")
pytest.importorskip("matplotlib")


# ============================================================================ operators
@pytest.fixture
def small(rng):
    model = fk.MLP.init([3, 5, 4], activation="tanh", head="categorical", seed=3, bias_std=0.3)
    X = rng.standard_normal((40, 3))
    y = rng.integers(0, 4, 40)
    return model, X, y


def test_fisher_operator_matches_the_dense_fisher(small, rng):
    from fisherkit.operators import fisher_operator

    model, X, y = small
    F = np.asarray(fk.fisher(model, X, shape="full").to_dense())
    op = fisher_operator(model, X, chunk=7)  # six chunks: the sum over chunks is weighted by rows
    P = model.n_params
    assert op.shape == (P, P) and op.dtype == model.dtype
    V = rng.standard_normal((P, 3))
    np.testing.assert_allclose(op.matmat(V), F @ V, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(op.matvec(V[:, 0]), F @ V[:, 0], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(op.rmatvec(V[:, 0]), F @ V[:, 0], rtol=1e-10, atol=1e-13)
    top = spla.eigsh(op, k=4, which="LA", return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top), np.linalg.eigvalsh(F)[-4:], rtol=1e-8)
    b = rng.standard_normal(P)
    damped = spla.LinearOperator((P, P), matvec=lambda v: op.matvec(v) + 0.1 * v, dtype=np.float64)
    x, info = spla.cg(damped, b, rtol=1e-12, atol=0.0, maxiter=10 * P)
    assert info == 0
    np.testing.assert_allclose(x, np.linalg.solve(F + 0.1 * np.eye(P), b), rtol=1e-8)


def test_fisher_operator_empirical_and_float32(small, rng):
    from fisherkit.operators import fisher_operator

    model, X, y = small
    E = np.asarray(fk.fisher(model, X, y, estimator="empirical", shape="full").to_dense())
    v = rng.standard_normal(model.n_params)
    np.testing.assert_allclose(fisher_operator(model, X, y, estimator="empirical", chunk=9).matvec(v), E @ v,
                               rtol=1e-10, atol=1e-13)
    m32 = fk.MLP(model.layers, model.activations, model.head, dtype=np.float32)
    op32 = fisher_operator(m32, X)
    assert op32.dtype == np.float32 and op32.matvec(v).dtype == np.float32
    F = np.asarray(fk.fisher(model, X, shape="full").to_dense())
    np.testing.assert_allclose(op32.matvec(v), F @ v, rtol=1e-4, atol=1e-5)


def test_fisher_operator_matmat_is_one_product_call_per_chunk(small, rng, monkeypatch):
    from fisherkit.operators import fisher_operator

    operators = sys.modules["fisherkit.operators"]
    model, X, _ = small
    calls = []
    real = operators.fisher_vector_product

    def counting(m, Xc, V, **kw):
        calls.append(np.shape(V))
        return real(m, Xc, V, **kw)

    monkeypatch.setattr(operators, "fisher_vector_product", counting)
    fisher_operator(model, X, chunk=20).matmat(rng.standard_normal((model.n_params, 5)))
    assert calls == [(model.n_params, 5)] * 2


def test_fisher_operator_reads_a_memory_map_in_chunks(small, tmp_path, rng):
    from fisherkit.operators import fisher_operator

    model, X, _ = small
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    v = rng.standard_normal(model.n_params)
    np.testing.assert_allclose(fisher_operator(model, mm, chunk=16).matvec(v),
                               fk.fisher_vector_product(model, X, v), rtol=1e-12, atol=1e-15)


def test_fisher_operator_refuses_sampled_estimators_and_bad_inputs(small):
    from fisherkit.operators import fisher_operator

    model, X, _ = small
    with pytest.raises(ValueError, match="deterministic product.*linear_operator"):
        fisher_operator(model, X, estimator="score")
    with pytest.raises(ValueError, match="needs labels"):
        fisher_operator(model, X, estimator="empirical")
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        fisher_operator(model, X[:, :2])
    with pytest.raises(ValueError, match="positive number of rows"):
        fisher_operator(model, X, chunk=0)


@pytest.mark.parametrize("shape", ["full", "layer", "unit", "diag"])
def test_linear_operator_of_every_matrix_object(small, rng, shape):
    from fisherkit.operators import linear_operator

    model, X, _ = small
    M = fk.fisher(model, X, shape=shape)
    op = linear_operator(M)
    D = np.asarray(M.to_dense())
    V = rng.standard_normal((model.n_params, 2))
    np.testing.assert_allclose(op.matmat(V), D @ V, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(op.matvec(V[:, 1]), D @ V[:, 1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.sort(spla.eigsh(op, k=2, which="LA", return_eigenvectors=False)),
                               np.linalg.eigvalsh(D)[-2:], rtol=1e-8)
    with pytest.raises(TypeError, match="without 'mv'"):
        linear_operator(D)


def test_operators_without_scipy_say_how_to_install_it(small, monkeypatch):
    from fisherkit import operators

    monkeypatch.setitem(sys.modules, "scipy.sparse.linalg", None)
    with pytest.raises(ImportError, match=re.escape('pip install "fisherkit[scipy]"')):
        operators.fisher_operator(*small[:2])


# ============================================================================ files
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small trained-looking classifier and its data in every format."""
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(5)
    model = fk.MLP.init([4, 12, 3], activation="tanh", head="categorical", seed=1, bias_std=0.2)
    X = rng.standard_normal((300, 4))
    y = np.argmax(model.forward(X) + 0.5 * rng.standard_normal((300, 3)), axis=1)
    model.to_npz(d / "model.npz")
    np.savez(d / "data.npz", X=X, y=y)
    np.save(d / "data.npy", np.column_stack([X[:, :2], y, X[:, 2:]]))  # labels in the middle
    header = "a,b,label,c,d"
    np.savetxt(d / "data.csv", np.column_stack([X[:, :2], y, X[:, 2:]]), delimiter=",", header=header,
               comments="", fmt="%.17g")
    return {"dir": d, "model": model, "X": X, "y": y}


def test_load_data_formats_agree(files):
    d = files["dir"]
    for name, labels in (("data.npz", None), ("data.npy", "2"), ("data.csv", "label")):
        X, y, desc = load_data(d / name, labels=labels)
        np.testing.assert_array_equal(np.asarray(X[:]), files["X"])
        np.testing.assert_array_equal(np.asarray(y[:]).reshape(-1), files["y"])
    X, _, desc = load_data(d / "data.npy", labels="2")
    assert isinstance(X, ColumnView) and isinstance(X.base, np.memmap)
    assert "memory-mapped" in desc["format"]
    np.testing.assert_array_equal(X[np.array([3, 7])], files["X"][[3, 7]])


def test_load_model_npz_and_wrong_files(files, tmp_path):
    d = files["dir"]
    m = load_model(d / "model.npz")
    np.testing.assert_array_equal(m.flat_params(), files["model"].flat_params())
    with pytest.raises(InputError, match="not a fisherkit model file"):
        load_model(d / "data.npz")
    with pytest.raises(InputError, match="--head gaussian does not match"):
        load_model(d / "model.npz", head="gaussian")
    with pytest.raises(InputError, match="does not exist"):
        load_model(tmp_path / "nope.npz")
    with pytest.raises(InputError, match="model file, not a data set"):
        load_data(d / "model.npz")


# ============================================================================ the report end to end
def _report(args, capsys):
    t0 = time.perf_counter()
    rc = main(["report", *map(str, args), "--quiet"])
    elapsed = time.perf_counter() - t0
    out, err = capsys.readouterr()
    return rc, out, err, elapsed


@pytest.mark.parametrize("data, labels", [("data.csv", "label"), ("data.npy", "2"), ("data.npz", None)])
def test_report_from_each_format(files, tmp_path, capsys, data, labels):
    d = files["dir"]
    out = tmp_path / "rep"
    args = [d / "model.npz", d / data, "--out", out, "--max-seconds", 15]
    if labels:
        args += ["--labels", labels]
    rc, stdout, err, elapsed = _report(args, capsys)
    assert rc == 0, err
    assert elapsed < 15
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "results.npz", "summary.json"]
    assert f"page: {out / 'report.html'}" in stdout
    assert "fisherkit report: MLP 4-12-3" in stdout and "effective dimension" in stdout
    assert err == ""  # no progress bar when standard error is not a terminal
    with np.load(out / "results.npz", allow_pickle=False) as z:
        np.testing.assert_allclose(z["fisher/diag"], fk.fisher(files["model"], files["X"]).values, rtol=1e-12)
        assert float(z["overview/accuracy"]) == pytest.approx(
            np.mean(np.argmax(files["model"].forward(files["X"]), 1) == files["y"]))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["n_inputs"] == 300 and summary["skipped"] == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_report_from_torch_files(files, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    model = files["model"]
    seq = torch.nn.Sequential(torch.nn.Linear(4, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3)).double()
    with torch.no_grad():
        for lin, (W, b) in zip((seq[0], seq[2]), model.layers):
            lin.weight.copy_(torch.from_numpy(np.asarray(W)))
            lin.bias.copy_(torch.from_numpy(np.asarray(b)))
    torch.save(seq, tmp_path / "seq.pt")
    torch.save(seq.state_dict(), tmp_path / "state.pt")
    d = files["dir"]
    for name, extra in (("seq.pt", []), ("state.pt", ["--arch", "4,12,3", "--activation", "tanh"])):
        out = tmp_path / f"rep-{name}"
        rc, _, err, elapsed = _report([tmp_path / name, d / "data.npz", "--out", out, "--max-seconds", 15, *extra],
                                      capsys)
        assert rc == 0, err
        assert elapsed < 15
        with np.load(out / "results.npz") as z:
            np.testing.assert_allclose(z["fisher/diag"], fk.fisher(model, files["X"]).values, rtol=1e-10)
    rc, _, err, _ = _report([tmp_path / "state.pt", d / "data.npz", "--out", tmp_path / "x"], capsys)
    assert rc == 2 and "state_dict" in err and "--arch" in err
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def page(files, tmp_path_factory):
    """One report of the small model, written to disk."""
    out = tmp_path_factory.mktemp("page") / "rep"
    rep = fk.report(files["model"], files["X"], files["y"], out=out, max_seconds=20, quiet=True)
    return rep, out


class _Checker(HTMLParser):
    """Tags must nest and close; collects img sources and every data-key element."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.images, self.cells, self.errors = [], [], [], []
        self._key = None
        self.doctype = False

    def handle_decl(self, decl):
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
            if not a.get("alt"):
                self.errors.append("img without alt")
        if tag not in self.VOID:
            self.stack.append(tag)
        if "data-key" in a:
            self._key = [a["data-key"], a.get("data-index"), ""]

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()
        if self._key is not None:
            self.cells.append(tuple(self._key))
            self._key = None

    def handle_data(self, data):
        if self._key is not None:
            self._key[2] += data


def test_page_is_valid_html_and_every_image_decodes(page):
    from PIL import Image

    _, out = page
    html = (out / "report.html").read_text(encoding="utf-8")
    c = _Checker()
    c.feed(html)
    c.close()
    assert c.doctype and not c.errors and c.stack == []
    assert "<script" not in html and "http://" not in html and "https://" not in html  # self-contained
    assert len(c.images) >= 8
    for src in c.images:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
        img.load()
        assert img.size[0] > 200 and img.size[1] > 150
    for sec in ("fisher", "spectrum", "estimators", "structure", "preconditioners"):
        assert f'<section id="{sec}">' in html
    assert html.count('class="guide"') == 5


def test_results_npz_holds_every_number_of_the_page(page, files):
    from fisherkit._report_html import fmt_value
    from fisherkit._report_keys import describe

    rep, out = page
    c = _Checker()
    c.feed((out / "report.html").read_text(encoding="utf-8"))
    with np.load(out / "results.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert len(c.cells) > 100
    for key, index, text in c.cells:
        value = arrays[key] if index is None else arrays[key].reshape(-1)[int(index)]
        assert text == fmt_value(value), (key, index)
    for key in arrays:
        assert describe(key), f"undocumented key {key}"
        np.testing.assert_array_equal(arrays[key], rep[key])
    # two numbers recomputed with the public API
    model, X = files["model"], files["X"]
    assert float(arrays["fisher/trace"]) == pytest.approx(fk.fisher(model, X).trace(), rel=1e-12)
    F = np.asarray(fk.fisher(model, X, shape="full").to_dense())
    np.testing.assert_allclose(arrays["spectrum/top"], np.linalg.eigvalsh(F)[::-1][:20], rtol=1e-9, atol=1e-15)
    V = np.asarray(fk.variance(model, X, estimator="hessian").values)
    sl = slice(4 * 12 + 12, None)  # layer 2: the last layer, where the Hessian estimator is exact
    assert arrays["variance/hessian/layer_mean_sd"][1] == 0 and np.all(V[sl] == 0)
    np.testing.assert_allclose(arrays["variance/hessian/sd"], np.sqrt(V), rtol=1e-12)


def test_loaded_report_draws_the_same_page(page):
    rep, out = page
    again = fk.Report.load(out)
    assert again.to_html() == (out / "report.html").read_text(encoding="utf-8")
    assert set(again.keys()) == set(rep.keys())
    assert "MLP 4-12-3" in repr(again)


def test_plot_functions_draw_on_an_axis_and_explain_skips(page):
    from matplotlib.figure import Figure

    rep, _ = page
    for name in fk.plot.__all__:
        ax = Figure().add_subplot()
        assert getattr(fk.plot, name)(rep, ax) is ax
        assert ax.has_data()
    partial = fk.Report({k: v for k, v in rep.arrays.items() if not k.startswith("spectrum/")},
                        {**rep.meta, "skipped": [{"section": "spectrum", "what": "Lanczos", "reason": "too slow"}]})
    with pytest.raises(ValueError, match="too slow"):
        fk.plot.spectrum(partial, Figure().add_subplot())


def test_report_without_labels_draws_them(files):
    rep = fk.report(files["model"], files["X"], max_seconds=10, quiet=True)
    assert "overview/loss" not in rep
    assert "drawn from the model" in rep.meta["sections"]["preconditioners"]["labels"]
    assert np.isfinite(rep["precond/cosine"]).all()


def test_gaussian_head_with_two_label_columns(tmp_path, capsys, rng):
    model = fk.MLP.init([3, 6, 2], activation="relu", head="gaussian", seed=2)
    X = rng.standard_normal((120, 3))
    Y = np.asarray(model.forward(X)) + rng.standard_normal((120, 2))
    model.to_npz(tmp_path / "m.npz")
    np.savetxt(tmp_path / "d.csv", np.column_stack([Y[:, 0], X, Y[:, 1]]), delimiter=",",
               header="t1,x1,x2,x3,t2", comments="")
    rc, _, err, _ = _report([tmp_path / "m.npz", tmp_path / "d.csv", "--labels", "t1,t2", "--out",
                             tmp_path / "r", "--max-seconds", 10, "--estimators", "hessian"], capsys)
    assert rc == 0, err
    rep = fk.Report.load(tmp_path / "r")
    assert float(rep["overview/loss"]) == pytest.approx(model.loss(X, Y))
    assert "variance/hessian/sd" in rep and "variance/score/sd" not in rep
    # ReLU: the Hessian estimator's diagonal is exact everywhere (sd 0)
    assert np.all(rep["variance/hessian/sd"] == 0)


# ============================================================================ bad inputs
@pytest.mark.parametrize("case", ["width", "labels", "text", "empty", "ragged", "nonfinite"])
def test_bad_inputs_get_clear_messages_and_no_output(files, tmp_path, capsys, case):
    d = files["dir"]
    model, data, extra = d / "model.npz", d / "data.csv", ["--labels", "label"]
    if case == "width":
        np.savetxt(tmp_path / "w.csv", np.column_stack([files["X"], files["X"][:, :1], files["y"]]), delimiter=",")
        data, extra, want = tmp_path / "w.csv", ["--labels", "5"], "has 5 feature columns but the model takes 4 inputs"
    elif case == "labels":
        np.savez(tmp_path / "l.npz", X=files["X"], y=files["y"] + 1)
        data, extra, want = tmp_path / "l.npz", [], r"row \d+ is 3; labels must be class indices 0..2"
    elif case == "text":
        lines = (d / "data.csv").read_text().splitlines()
        cells = lines[5].split(",")
        cells[3] = "oops"
        lines[5] = ",".join(cells)
        (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
        data, want = tmp_path / "t.csv", "data row 5, column 4 'c' holds text 'oops'"
    elif case == "empty":
        (tmp_path / "e.csv").write_text("")
        data, want = tmp_path / "e.csv", "is an empty file"
    elif case == "ragged":
        (tmp_path / "r.csv").write_text("1,2,3,4,0\n1,2,3\n")
        data, extra, want = tmp_path / "r.csv", ["--labels", "4"], "data row 2 has 3 columns"
    else:
        X = files["X"].copy()
        X[7, 1] = np.nan
        np.save(tmp_path / "n.npy", X)
        data, extra, want = tmp_path / "n.npy", [], "row 8, feature column 2 is nan"
    out = tmp_path / "out"
    rc, stdout, err, _ = _report([model, data, "--out", out, *extra], capsys)
    assert rc == 2
    assert re.search(want, err), err
    assert str(data) in err
    assert "Traceback" not in err and stdout == ""
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_arguments(files, tmp_path, capsys):
    d = files["dir"]
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "thesis.tex").write_text("keep me")
    rc, _, err, _ = _report([d / "model.npz", d / "data.npz", "--out", tmp_path / "foreign"], capsys)
    assert rc == 2 and "holds files other than a fisherkit report (thesis.tex)" in err
    assert (tmp_path / "foreign" / "thesis.tex").read_text() == "keep me"
    rc, _, err, _ = _report([d / "model.npz", d / "data.npz", "--max-seconds", 1], capsys)
    assert rc == 2 and "at least 5 s" in err
    rc, _, err, _ = _report([d / "model.npz", d / "data.csv", "--labels", "nope"], capsys)
    assert rc == 2 and "has no column 'nope'; its columns are a, b, label, c, d" in err
    rc, _, err, _ = _report([d / "model.npz", d / "data.csv"], capsys)
    assert rc == 2 and "has 5 columns but the model takes 4 inputs" in err and "--labels COLUMN" in err
    with pytest.raises(ValueError, match="estimators"):
        fk.report(files["model"], files["X"], estimators=["empirical"])


def test_an_existing_report_is_replaced(files, tmp_path):
    out = tmp_path / "rep"
    fk.report(files["model"], files["X"][:100], out=out, max_seconds=10, quiet=True)
    fk.report(files["model"], files["X"][:50], out=out, max_seconds=10, quiet=True)
    assert fk.Report.load(out).meta["data"]["n_inputs"] == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


# ============================================================================ time limit and Ctrl-C
def test_time_limit_is_kept_by_skipping_and_the_page_says_why(tmp_path, rng):
    # unit blocks of 785 inputs: their eigenvalues alone are predicted to take longer than the limit
    model = fk.MLP.init([784, 128, 10], activation="relu", head="categorical", seed=0)
    X = rng.random((3000, 784))
    t0 = time.perf_counter()
    rep = fk.report(model, X, out=tmp_path / "big", max_seconds=7, quiet=True)
    assert time.perf_counter() - t0 < 7
    whats = {s["what"] for s in rep.skipped}
    assert "unit blocks and their eigenvalues" in whats, rep.skipped
    html = (tmp_path / "big" / "report.html").read_text()
    assert "Skipped" in html and "unit blocks and their eigenvalues" in html
    assert "of the time limit were left" in html


def test_ctrl_c_propagates_and_writes_nothing(files, tmp_path, monkeypatch, capsys):
    def interrupted(ctx, seconds):
        raise KeyboardInterrupt

    sections = list(_report_sections.SECTIONS)
    sections[2] = ("estimators", interrupted, 0.25)
    monkeypatch.setattr(sys.modules["fisherkit.report"], "SECTIONS", tuple(sections))
    with pytest.raises(KeyboardInterrupt):
        fk.report(files["model"], files["X"], out=tmp_path / "r", max_seconds=10)
    assert list(tmp_path.iterdir()) == []
    d = files["dir"]
    rc, _, err, _ = _report([d / "model.npz", d / "data.npz", "--out", tmp_path / "r"], capsys)
    assert rc == 130 and "interrupted; nothing was written" in err
    assert list(tmp_path.iterdir()) == []


def test_sigint_stops_the_command(tmp_path, rng):
    model = fk.MLP.init([784, 128, 10], activation="relu", head="categorical", seed=0)
    model.to_npz(tmp_path / "m.npz")
    np.save(tmp_path / "x.npy", rng.random((3000, 784)))
    proc = subprocess.Popen([sys.executable, "-m", "fisherkit", "report", str(tmp_path / "m.npz"),
                             str(tmp_path / "x.npy"), "--out", str(tmp_path / "r"), "--max-seconds", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_at_a_terminal)
    time.sleep(3.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "x.npy"]


# ============================================================================ headless Chromium
def _chromium():
    for name in ("chromium-headless-shell", "chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_chromium_renders_the_page(page, tmp_path):
    from PIL import Image

    exe = _chromium()
    if exe is None:
        if os.environ.get("FISHERKIT_REQUIRE_CHROMIUM") == "1":
            pytest.fail("FISHERKIT_REQUIRE_CHROMIUM=1 but no chromium-headless-shell is installed "
                        "(apt-get install chromium-headless-shell)")
        pytest.skip("no headless Chromium (apt-get install chromium-headless-shell)")
    _, out = page
    shot = tmp_path / "shot.png"
    cmd = [exe, "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
           "--window-size=1280,2000", (out / "report.html").resolve().as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    console = [l for l in res.stderr.splitlines() if "CONSOLE" in l or "Uncaught" in l]
    assert console == []
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (2000, 1280)
    assert (img < 128).mean() > 0.01  # text and figures, not a blank page
    assert img.std() > 20


# ============================================================================ smaller pieces
@pytest.mark.parametrize("head, bad, want", [
    ("categorical", [[0.0], [3.0]], "class indices 0..2"),
    ("categorical", [[1.0], [0.5]], "class indices"),
    ("bernoulli", [[0, 1, 1], [0, 2, 0]], "0 or 1"),
    ("poisson", [[0, 1, 1], [0, -1, 0]], "counts"),
    ("gaussian", [[0, 1, 1], [0, np.inf, 0]], "finite"),
])
def test_label_support_per_head(head, bad, want):
    from fisherkit._data import check_labels

    model = fk.MLP.init([2, 3], head=head, seed=0)
    y = np.asarray(bad, dtype=float)
    with pytest.raises(InputError, match=f"row 2.*{want}"):
        check_labels(model, y if head != "categorical" else y[:, 0], 2)
    with pytest.raises(InputError, match="needs 3 columns" if head != "categorical" else "one column"):
        check_labels(model, np.zeros((2, 2)), 2)


def test_without_matplotlib_the_report_says_how_to_install_it(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=re.escape('pip install "fisherkit[report]"')):
        fk.report(files["model"], files["X"], out=tmp_path / "r")
    d = files["dir"]
    rc, _, err, _ = _report([d / "model.npz", d / "data.npz", "--out", tmp_path / "r"], capsys)
    assert rc == 2 and "fisherkit[report]" in err
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_only_on_a_terminal_and_not_when_quiet(files, monkeypatch):
    pytest.importorskip("tqdm")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for quiet in (False, True):
        term = Terminal()
        monkeypatch.setattr(sys, "stderr", term)
        fk.report(files["model"], files["X"][:60], max_seconds=10, quiet=quiet)
        assert ("fisherkit report" in term.getvalue()) is not quiet
