"""The QC-plot server: pages rendered in forks of it, the run's process never importing the drawing layer,
failures named, and a server closed early leaving nothing behind."""
import os
import subprocess
import sys

import numpy as np
import pytest

import soxs_mflat.plotserver as ps
from soxs_mflat.plotserver import PlotError, PlotServer
from test_plots import LAYOUT, NA, NB, _edges, _flat, _info


@pytest.mark.parametrize("shm", [True, False] if ps.SHM else [False])
def test_pages_rendered_by_the_server(tmp_path, monkeypatch, shm):
    monkeypatch.setattr(ps, "SHM", shm)   # memory files (Linux) or the pipe: the same pages
    edges, lo, up = _edges()
    flat = _flat(lo, up, [1.0] * 16)
    model = np.full((NA, NB), 0.01, np.float32)
    srv = PlotServer.start()
    try:
        srv.submit("order_loc_pdf", (flat, edges, LAYOUT, _info()), tmp_path / "a.pdf")
        srv.submit("background_pdf", (flat + model, model, edges, LAYOUT, _info()), tmp_path / "b.pdf")
        srv.wait()
        assert len(srv._shared) == 3        # flat, flat + model and the model, each sent once
    finally:
        srv.close()
    assert not srv.is_alive()
    for name, images in (("a.pdf", 2), ("b.pdf", 6)):   # as test_plots: the flat and its bar / three images and bars
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"%PDF") and data.count(b"/Subtype /Image") == images
    assert sorted(os.listdir(tmp_path)) == ["a.pdf", "b.pdf"]   # no temporaries left


def test_a_failing_page_is_named_with_its_reason(tmp_path):
    srv = PlotServer.start()
    try:
        srv.submit("order_loc_pdf", (np.zeros((3, 3, 3)), {}, LAYOUT, _info()), tmp_path / "bad.pdf")
        with pytest.raises(PlotError, match=r"bad\.pdf \(worker exit code 1: \w+"):
            srv.wait()
    finally:
        srv.close()
    assert not (tmp_path / "bad.pdf").exists()


def test_closed_at_once_and_reaped():
    srv = PlotServer.start()
    srv.close()
    assert not srv.is_alive() and srv.exitcode is not None
    srv.close()                              # idempotent


def test_the_run_never_imports_the_drawing_layer(tmp_path):
    """The pages are made in the server's forks; the run's own process loads neither reportlab nor
    matplotlib (an import there competes for the GIL with the detrending)."""
    from soxs_mflat.simulate.run import simulate_set
    w = simulate_set("soxs", "vis", tmp_path / "set", nflats=2, binning="2x2", seed=4)
    code = ("import sys; from soxs_mflat.recipe import run_mflat; r = run_mflat(sys.argv[1], sys.argv[2]); "
            "assert not {'matplotlib', 'reportlab', 'PIL'} & set(sys.modules), 'imported'; print(sorted(p.name for p in "
            "r.products.values() if p.suffix == '.pdf'))")
    p = subprocess.run([sys.executable, "-c", code, str(w["sof"]), str(tmp_path / "out")], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "['bkground_vis.pdf', 'order_loc_res_vis.pdf']"
    assert all((tmp_path / "out" / n).stat().st_size > 10000 for n in ("bkground_vis.pdf", "order_loc_res_vis.pdf"))


def test_workers_watched_without_pidfd(tmp_path, monkeypatch):
    """Where os.pidfd_open is missing (Linux < 5.3), the server polls its workers instead."""
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    edges, lo, up = _edges()
    srv = PlotServer.start()
    try:
        srv.submit("order_loc_pdf", (_flat(lo, up, [1.0] * 16), edges, LAYOUT, _info()), tmp_path / "a.pdf")
        srv.wait()
    finally:
        srv.close()
    assert (tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.skipif(not ps.SHM, reason="memory files are Linux's (the pipe carries the arrays elsewhere)")
@pytest.mark.parametrize("dtype, shape", [("<f4", (37, 53)), (">f8", (5, 3, 2)), ("|u1", (1000,)), ("<i8", (0, 4))])
def test_arrays_reach_the_server_exactly_through_memory_files(dtype, shape):
    import pickle
    from multiprocessing.connection import Pipe
    a, b = Pipe(duplex=True)
    try:
        arr = (np.arange(int(np.prod(shape))) * 3 + 1).astype(dtype).reshape(shape)
        assert arr.dtype.str == dtype
        ps._send_array(a, ps._Array("k", arr))
        kind, key, dt, shp = pickle.loads(b.recv_bytes())
        assert (kind, key, dt, shp) == ("shm", "k", dtype, shape)
        got = ps._recv_shared(b, dt, shp)
        assert got.dtype == arr.dtype and got.shape == arr.shape and np.array_equal(got, arr)
        assert not got.flags.writeable            # the run's arrays are never modified through the map
        arr[...] = 0                              # a copy in the file: later changes do not reach the page
        assert got.size == 0 or not np.array_equal(got, arr)
    finally:
        a.close()
        b.close()


def test_no_memory_file_falls_back_to_the_pipe(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise OSError(24, "Too many open files")
    monkeypatch.setattr(os, "memfd_create", refuse, raising=False)
    monkeypatch.setattr(ps, "SHM", True)
    edges, lo, up = _edges()
    flat = _flat(lo, up, [1.0] * 16)
    srv = PlotServer.start()
    try:
        srv.submit("order_loc_pdf", (flat, edges, LAYOUT, _info()), tmp_path / "a.pdf")
        srv.wait()
    finally:
        srv.close()
    assert (tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.skipif(not ps.SHM, reason="memory files are Linux's")
def test_a_failed_send_is_reported_not_waited_for(tmp_path, monkeypatch):
    """The header went, its descriptor did not: the server waits for it; wait() must not."""
    import socket
    import threading

    def broken(*a, **k):
        raise OSError(32, "Broken pipe")
    monkeypatch.setattr(socket, "send_fds", broken)
    edges, lo, up = _edges()
    srv = PlotServer.start()
    out = []
    try:
        srv.submit("order_loc_pdf", (_flat(lo, up, [1.0] * 16), edges, LAYOUT, _info()), tmp_path / "a.pdf")
        t = threading.Thread(target=lambda: out.append(pytest.raises(PlotError, srv.wait)), daemon=True)
        t.start()
        t.join(20)
        assert not t.is_alive(), "wait() hung on a page whose data never reached the server"
    finally:
        srv.close()
    assert out and "could not send" in str(out[0].value)


def test_an_array_may_be_overwritten_once_copied_for_the_server(tmp_path, monkeypatch):
    """The recipe swaps its result images into FITS byte order in place after submitting their pages:
    copied() holds it back until the array's bytes are the server's (here a send slowed by 0.3 s), so the
    page is the one of the untouched array."""
    import time
    edges, lo, up = _edges()
    flat = _flat(lo, up, [1.0] * 16)
    slow = ps._send_array

    def late(conn, a):
        time.sleep(0.3)
        slow(conn, a)
    pages = {}
    for name, send in (("reference", slow), ("overwritten", late)):
        monkeypatch.setattr(ps, "_send_array", send)
        mine = flat.copy()
        srv = PlotServer.start()
        try:
            srv.submit("order_loc_pdf", (mine, edges, LAYOUT, _info()), tmp_path / f"{name}.pdf")
            t0 = time.perf_counter()
            srv.copied(mine)
            waited = time.perf_counter() - t0
            mine[:] = -1.0            # what the byte swap does to the values the page must not see
            srv.copied(np.zeros(3))   # an array never submitted: nothing to wait for
            srv.wait()
        finally:
            srv.close()
        pages[name] = (tmp_path / f"{name}.pdf").read_bytes()
        if name == "overwritten":
            assert waited >= 0.25
    assert pages["overwritten"] == pages["reference"]


def test_copied_returns_when_the_sender_has_stopped(tmp_path, monkeypatch):
    """A send that fails stops the sender: copied() must not wait for arrays it will never send (wait()
    then reports the failure)."""
    def broken(conn, a):
        raise OSError("no room")
    monkeypatch.setattr(ps, "_send_array", broken)
    edges, lo, up = _edges()
    a, b = _flat(lo, up, [1.0] * 16), _flat(lo, up, [2.0] * 16)
    srv = PlotServer.start()
    try:
        srv.submit("background_pdf", (a, b, edges, LAYOUT, _info()), tmp_path / "b.pdf")
        srv.copied(a)
        srv.copied(b)                 # queued behind the failed one: never sent
        with pytest.raises(PlotError, match="no room"):
            srv.wait()
    finally:
        srv.close()
