"""QC PDFs off the critical path: a plot server, forked at the start of a run, imports the drawing layer
(reportlab) and warms it up while the run reads, detrends and computes; each PDF is then rendered in a fresh
fork of the server, all of them concurrently. The run itself never imports the drawing layer (an import
in the run's process competes for the GIL with the detrending), and nothing depends on the number of cores.

The server and its workers ignore SIGINT (the run handles Ctrl-C and removes its staged products), take
SIGTERM's default, and die with their parent (PR_SET_PDEATHSIG). Arrays go to the server once, as raw
buffers, however many pages use them; messages are sent from a thread, so the run never waits for the
server to read them."""
from __future__ import annotations

import os
import pickle
import queue
import select
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

BIG = 1 << 16    # arrays of at least this many bytes go to the server once, as raw buffers
# Linux: each array is copied once into a memory file whose descriptor goes over the socket pair; the
# server maps it (no copy; its page workers inherit the mapping). Through the pipe the server read an
# array in chunks, gathered them and copied them again: ~50 ms of its CPU for a SOXS VIS run's 26 MB.
SHM = hasattr(os, "memfd_create") and hasattr(socket, "send_fds")


@dataclass
class PlotInfo:
    """What the header block of a QC page says about the run (built by the recipe)."""
    instrument: str
    arm: str
    lamp: str                      # "QTH", "D2 (DLAMP)", "D2 + QTH stitched", ...
    date_obs: str | None = None
    night: str | None = None
    n_flats: int = 0
    qc: Sequence[Any] = ()         # qc.QCRow
    params: dict = field(default_factory=dict)


def die_with_parent() -> None:
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))   # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def _child_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def write_atomic(data: bytes, path: str) -> None:
    """``path`` written through a hidden temporary beside it and renamed (never a partial file)."""
    d, name = os.path.split(path)
    tmp = os.path.join(d, f".{name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class PlotError(RuntimeError):
    """A QC page could not be rendered (the message names it and says why)."""


class PlotServer:
    """``srv = PlotServer.start()`` early; ``srv.submit(name, args, path)`` for each page (``name``: a
    function of soxs_mflat.plots returning the PDF's bytes); ``srv.wait()`` before the products are
    committed; ``srv.close()`` at the end (also on errors; idempotent)."""

    def __init__(self, pid: int, conn, warm: bool):
        self.pid, self.conn, self.warm = pid, conn, warm
        self.exitcode: int | None = None
        self._out: queue.Queue = queue.Queue()
        self._sender = threading.Thread(target=self._send_loop, name="soxs-mflat-plots", daemon=True)
        self._sender.start()
        self._shared: dict[int, tuple[str, Any]] = {}    # id(array) -> (key, array kept alive)
        self._copied: dict[int, threading.Event] = {}   # id(array) -> set once its bytes are in the server's hands
        self._pending: dict[int, str] = {}               # job id -> path
        self._send_error: BaseException | None = None
        self._next = 0

    @classmethod
    def start(cls) -> "PlotServer":
        """Fork the server. It imports the plots module itself (and warms it up when it was not loaded
        yet: a fresh command-line process)."""
        from multiprocessing.connection import Pipe
        ours, theirs = Pipe(duplex=True)
        warm = "soxs_mflat.plots" not in sys.modules
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:   # the server: never returns into the caller's stack
            code = 0
            try:
                ours.close()
                _child_signals()
                die_with_parent()
                if os.getppid() == parent:
                    _serve(theirs, warm)
            except BaseException:   # noqa: BLE001 - the parent learns of it through the closed pipe
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        return cls(pid, ours, warm)

    # --- the run's side -----------------------------------------------------------------------
    def submit(self, name: str, args: tuple, path) -> int:
        job, self._next = self._next, self._next + 1
        self._pending[job] = str(path)
        buf = _Pickler.dumps(args, self)
        self._out.put(("job", job, name, buf, str(path)))
        return job

    def _share(self, arr) -> str:
        """Key of ``arr`` on the server; the array is queued for it the first time."""
        import numpy as np
        if id(arr) not in self._shared:
            key = f"a{len(self._shared)}"
            c = np.ascontiguousarray(arr)
            self._shared[id(arr)] = (key, arr)
            self._copied[id(arr)] = done = threading.Event()
            self._out.put(_Array(key, c, done))
        return self._shared[id(arr)][0]

    def copied(self, arr) -> None:
        """Return once the server no longer reads ``arr``'s memory (its bytes were copied for it, or the
        send failed, which wait() reports): the caller may then overwrite it."""
        done = self._copied.get(id(arr))
        while done is not None and not done.wait(0.05):
            if not self._sender.is_alive():   # it stopped on a send error, or close(): nothing reads arr
                return

    def _send_loop(self) -> None:
        while True:
            msg = self._out.get()
            if msg is None:
                return
            conn = self.conn
            try:
                if conn is None:
                    raise OSError("the plot server's pipe is closed")
                if isinstance(msg, _Array):
                    _send_array(conn, msg)
                else:
                    conn.send_bytes(pickle.dumps(msg, protocol=5))
            # the server died (wait() reports it), or close() shut the pipe under a send (TypeError:
            # the Connection's handle became None mid-write)
            except (OSError, ValueError, TypeError) as exc:
                self._send_error = exc
                return
            finally:
                if isinstance(msg, _Array):
                    msg.copied.set()

    def wait(self) -> None:
        """Block until every submitted page is written; PlotError names the first that failed."""
        failed = []
        while self._pending:
            try:
                if not self.conn.poll(0.5):
                    if self._dead():
                        raise EOFError
                    if self._send_error is not None:   # the server waits for what was never sent
                        raise PlotError(f"could not send the QC plots' data to the plot server "
                                        f"({self._send_error})")
                    continue
                _, job, code, text = pickle.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                paths = ", ".join(self._pending.values())
                raise PlotError(f"could not render the QC plot(s) {paths} (the plot server ended, exit code "
                                f"{self.exitcode})") from None
            path = self._pending.pop(job)
            if code != 0:
                failed.append(f"could not render the QC plot {path} (worker exit code {code}: {text})")
        if failed:
            raise PlotError("; ".join(failed))

    def _dead(self) -> bool:
        if self.exitcode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid:
                self.exitcode = os.waitstatus_to_exitcode(status)
        return self.exitcode is not None

    # --- what the staging area needs to abort a run (as for a multiprocessing.Process) -------------
    def is_alive(self) -> bool:
        return not self._dead()

    def kill(self) -> None:
        if not self._dead():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def join(self, timeout: float | None = None) -> None:
        t_end = None if timeout is None else time.monotonic() + timeout
        while not self._dead() and (t_end is None or time.monotonic() < t_end):
            time.sleep(0.002)

    def close(self) -> None:
        """End the server (its running workers die with it) and reap it."""
        self._out.put(None)
        self.kill()          # first: a send blocked on the server's full pipe then fails and returns
        self._sender.join(5)
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.join(5)


class _Pickler(pickle.Pickler):
    """Pickles a page's arguments with its big arrays replaced by their keys on the server."""

    def __init__(self, fh, server: PlotServer):
        super().__init__(fh, protocol=5)
        self.server = server

    def persistent_id(self, obj):
        if type(obj).__name__ == "ndarray" and type(obj).__module__ == "numpy" and obj.nbytes >= BIG:
            return self.server._share(obj)
        return None

    @classmethod
    def dumps(cls, obj, server: PlotServer) -> bytes:
        import io
        fh = io.BytesIO()
        cls(fh, server).dump(obj)
        return fh.getvalue()


# ------------------------------------------------------------------------------------------ the server
def _serve(conn, warm: bool) -> None:
    import gc
    from . import plots
    if warm:   # what the first page would load: a page with text and an image, drawn once
        plots.warm_up()
    gc.freeze()   # what the imports made is never collected: the workers' collections stay short
    store: dict[str, Any] = {}
    running: dict[int, tuple[int, int, int | None]] = {}   # pid -> (job, error pipe, pidfd or None)
    header = None
    while True:
        wake = [fd for _, _, fd in running.values() if fd is not None]
        poll = 0.01 if any(fd is None for _, _, fd in running.values()) else None   # no pidfd: poll waitpid
        ready, _, _ = select.select([conn, *wake], [], [], poll)
        if conn in ready:
            try:
                msg = conn.recv_bytes()
            except (EOFError, OSError):
                return   # the run closed the pipe: running workers die with this process
            if header is not None:   # the raw buffer of the array announced just before
                import numpy as np
                key, dtype, shape = header
                store[key] = np.frombuffer(msg, dtype=dtype).reshape(shape)
                header = None
            else:
                kind, *rest = pickle.loads(msg)
                if kind == "data":
                    header = rest
                elif kind == "shm":
                    key, dtype, shape = rest
                    store[key] = _recv_shared(conn, dtype, shape)
                else:
                    job, name, args, path = rest
                    pid, err = _fork_worker(plots, store, name, args, path)
                    running[pid] = (job, err, _pidfd(pid))
        for pid in list(running):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                job, err, fd = running.pop(pid)
                if fd is not None:
                    os.close(fd)
                text = os.read(err, 4000).decode("utf-8", "replace")
                os.close(err)
                conn.send_bytes(pickle.dumps(("done", job, os.waitstatus_to_exitcode(status), text)))


@dataclass
class _Array:
    key: str
    data: Any   # a C-contiguous numpy array
    copied: threading.Event = field(default_factory=threading.Event)   # set when the send no longer reads data


def _send_array(conn, a: _Array) -> None:
    """The array to the server: its bytes in a memory file whose descriptor follows its header ("shm"),
    or, where no memory file can be made, through the pipe ("data"). The file is made and filled first,
    so that a failure there sends nothing (the server would wait for a descriptor)."""
    header = (a.key, a.data.dtype.str, a.data.shape)
    view = memoryview(a.data.reshape(-1).view("u1"))
    fd = _memory_file(view) if SHM else None
    if fd is None:
        conn.send_bytes(pickle.dumps(("data", *header), protocol=5))
        conn.send_bytes(view)
        return
    try:
        conn.send_bytes(pickle.dumps(("shm", *header), protocol=5))
        with _socket_of(conn) as sock:
            socket.send_fds(sock, [b"F"], [fd])
    finally:
        os.close(fd)


def _memory_file(view: memoryview) -> int | None:
    """A memory file holding ``view`` (its descriptor), or None where one cannot be made (no memfd in a
    sandbox, the descriptor limit reached, no memory for it)."""
    try:
        fd = os.memfd_create("soxs-mflat-plot", os.MFD_CLOEXEC)
    except OSError:
        return None
    try:
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])
        return fd
    except OSError:
        os.close(fd)
        return None


def _socket_of(conn) -> socket.socket:
    """A socket object on a duplicate of the connection's descriptor, blocking (a default timeout set
    elsewhere in the process would make the shared file non-blocking under the Connection)."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    sock.setblocking(True)
    return sock


def _recv_shared(conn, dtype: str, shape) -> Any:
    """The array whose "shm" header was just read (see _send_array), mapped read-only (no copy)."""
    import mmap
    import numpy as np
    with _socket_of(conn) as sock:
        _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    if len(fds) != 1:
        raise OSError("the run sent an array without its memory file")
    try:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buf = mmap.mmap(fds[0], n, mmap.MAP_SHARED, mmap.PROT_READ) if n else b""
    finally:
        os.close(fds[0])
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def _pidfd(pid: int) -> int | None:
    """A descriptor that select() sees readable when the worker ends (Linux >= 5.3), else None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _fork_worker(plots, store: dict, name: str, args: bytes, path: str) -> tuple[int, int]:
    """Render one page in a fork of the server: (pid, read end of its error pipe)."""
    r, w = os.pipe()
    server = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            die_with_parent()
            if os.getppid() != server:
                raise RuntimeError("the plot server ended")
            import io
            unpickler = pickle.Unpickler(io.BytesIO(args))
            unpickler.persistent_load = store.__getitem__
            write_atomic(getattr(plots, name)(*unpickler.load()), path)
            code = 0
        except BaseException as exc:   # noqa: BLE001 - reported to the run, which names the page
            try:
                os.write(w, f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")[:3000])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(w)
    return pid, r
