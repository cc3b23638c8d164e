"""One progress bar for every long command (run, eval, bench), on tqdm."""

from __future__ import annotations


class Progress:
    """A tqdm bar, or nothing when disabled or there is nothing to count."""

    def __init__(self, total: int, enabled: bool = True, unit: str = "rec", desc: str = "aidsafe"):
        self._bar = None
        if enabled and total:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=unit, desc=desc, dynamic_ncols=True)

    def tick(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
