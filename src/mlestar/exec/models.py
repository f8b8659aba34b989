"""What the executor takes and gives back."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from mlestar.core.contract import SCORE_LABEL


class ExecLimits(BaseModel):
    timeout_s: float = 3600.0  # wall clock; the whole process group is killed past it
    memory_mb: int = 8192  # address-space / cgroup style cap on the script and its children
    threads: int = 1  # OMP/MKL/OPENBLAS/LightGBM thread count
    network: bool = False  # False: cut network where the OS allows it, warn where it does not
    processes: int = 1024  # processes and threads of the script at once (0: no cap)
    disk_mb: int = 20480  # what the script may write into its own folder, and its largest file (0: no cap)


class ScriptJob(BaseModel):
    """One script to run: its folder (``script.py``, ``input``, ``working``, ``final``), its limits,
    and the paths it must not read even by following its input links."""

    workdir: Path
    limits: ExecLimits = Field(default_factory=ExecLimits)
    hide: list[Path] = Field(default_factory=list)
    extra_env: dict[str, str] = Field(default_factory=dict)


class ExecResult(BaseModel):
    returncode: int
    stdout: str = ""  # trimmed: head and tail kept
    stderr: str = ""  # trimmed: head and tail kept
    score: float | None = None  # the value of the last score line (mlestar.core.contract), if any
    wall_s: float = 0.0
    peak_memory_mb: float = 0.0
    timed_out: bool = False
    memory_exceeded: bool = False
    disk_exceeded: bool = False  # killed for writing more than its disk cap
    processes_exceeded: bool = False  # killed for starting more processes and threads than its cap
    network_isolated: bool = False  # True when the script really ran without network
    cancelled: bool = False  # killed on request (Ctrl+C, stop), not for its own fault
    executor: str = "local"  # which executor ran it
    node_id: str | None = None  # the Ray node that ran it (None on the local pool)
    node_ip: str | None = None
    # Set when the executor could not run the script to its end (its worker or node died, the
    # cluster was lost): not the script's fault, so it is run again rather than debugged.
    infrastructure_error: str | None = None
    gpu: str | None = None  # the device id the script ran on (CUDA_VISIBLE_DEVICES), if any
    peak_gpu_memory_mb: float = 0.0  # sampled from nvidia-smi while it ran (0: no GPU or no nvidia-smi)
    warnings: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.returncode == 0
            and self.score is not None
            and not self.timed_out
            and self.infrastructure_error is None
        )

    def error_text(self, limit: int = 4000) -> str:
        """The part of the output a debugger needs: the end of stderr, or why there is no score."""
        if self.infrastructure_error is not None:
            return f"The script could not be run to its end: {self.infrastructure_error}"
        if self.timed_out:
            return f"The script was killed after exceeding its time limit ({self.wall_s:.0f}s)."
        if self.cancelled:
            return "The script was cancelled before it finished."
        if self.memory_exceeded:
            return "The script was killed for exceeding its memory limit."
        if self.disk_exceeded:
            return "The script was killed for writing more to disk than its limit allows."
        if self.processes_exceeded:
            return "The script was killed for starting more processes and threads than its limit allows."
        if self.returncode != 0:
            return self.stderr[-limit:] or self.stdout[-limit:]
        if self.score is None:
            return (
                f"The script finished without printing the line '{SCORE_LABEL}: <float>'.\n"
                + self.stdout[-limit // 2 :]
            )
        return ""
