"""The Instagram commands' progress on stderr: steps as dim lines, uploads and video
conversions as Rich progress bars. Shared by `carrier instagram post` (cli/instagram.py)
and its scheduled form (cli/instagram_queue.py), which import it, not each other."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from carrier_cli.clients.instagram.pipeline import Reporter


def rich_reporter(quiet: bool) -> Reporter:
    from carrier_cli.clients.instagram.pipeline import Reporter

    class RichReporter(Reporter):
        """Steps as dim lines on stderr, uploads as a progress bar with bytes/s."""

        def __init__(self) -> None:
            self._progress: Any = None

        def info(self, message: str) -> None:
            super().info(message)
            if not quiet:
                from carrier_cli.output import notice

                notice(message)

        def upload_progress(self, name: str, total: int) -> Any:
            if quiet:
                return None
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            from carrier_cli.output import err

            self._progress = Progress(
                TextColumn("{task.description}", style="bold", markup=False),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=err(),
                transient=True,
            )
            self._progress.start()
            task = self._progress.add_task(f"Uploading {name}", total=total)
            progress = self._progress

            def update(done: int, _total: int) -> None:
                progress.update(task, completed=done)

            return update

        def upload_done(self) -> None:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None

        def transcode_progress(self, name: str, seconds: float) -> Any:
            if quiet:
                return None
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            from carrier_cli.output import err

            self._progress = Progress(
                TextColumn("{task.description}", style="bold", markup=False),
                BarColumn(),
                TextColumn("{task.completed:.1f}/{task.total:.1f} s of video"),
                TimeRemainingColumn(),
                console=err(),
                transient=True,
            )
            self._progress.start()
            task = self._progress.add_task(f"Converting {name} for Instagram", total=seconds)
            progress = self._progress
            return lambda done: progress.update(task, completed=done)

        def transcode_done(self) -> None:
            self.upload_done()

    return RichReporter()
