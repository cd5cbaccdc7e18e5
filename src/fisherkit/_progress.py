"""The ``progress`` option of long calls: None/False (nothing), a callable taking
(done, total) inputs, or True for a progress bar (tqdm, an optional dependency) on standard
error. The compiled core calls it between chunks, at most about ten times a second."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def reporter(progress: Any, desc: str) -> Iterator[Callable[[int, int], None] | None]:
    if progress is None or progress is False:
        yield None
        return
    if progress is True:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            raise ImportError("progress=True draws a progress bar with tqdm: pip install tqdm "
                              "(or pass a callable taking (done, total))") from None
        bar = tqdm(total=0, desc=desc, unit="inputs", leave=False)

        def update(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
            bar.n = done
            bar.refresh()

        try:
            yield update
        finally:
            bar.close()
        return
    if not callable(progress):
        raise TypeError(f"argument 'progress' must be None, True or a callable (done, total), got "
                        f"{type(progress).__name__}")
    yield progress
