"""Stopping on Ctrl-C after a whole step, and continuing an interrupted epoch exactly.

While `StopOnSigint` is installed, Ctrl-C only sets a flag that the training loop reads after each
optimizer step (a Python attribute: no cost per step). The loop then raises `Stop` with the
`Progress` of its epoch: the steps done, the partial sums of the loss terms, the global RNG states
and the state of the batches' noise generator. Saved in the checkpoint, that is everything the
rest of the epoch depends on, so a resumed run ends bit-identical to one never stopped.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from aezoo.errors import UsageError


class StopOnSigint:
    """A `with` block in which Ctrl-C asks the training loop to stop (`requested`) instead of
    raising wherever it lands; a second Ctrl-C raises KeyboardInterrupt at once. Installed only
    in the main thread (where Python delivers signals) and only if SIGINT is not ignored; the
    previous handler comes back on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not signal.SIG_IGN:
                self._previous = signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            previous = signal.SIG_DFL if self._previous is None else self._previous
            signal.signal(signal.SIGINT, previous)
            self._installed = False


def rng_state(device: torch.device) -> dict[str, Tensor]:
    """The global RNG states training draws from: the CPU's and the accelerator's."""
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        states["mps"] = torch.mps.get_rng_state()
    return states


def set_rng_state(states: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(states["cpu"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
    elif device.type == "mps":
        torch.mps.set_rng_state(states["mps"])


@dataclass
class Progress:
    """Where an interrupted epoch stood after its last whole step."""

    epoch: int  # the epoch in progress, from 0 (= the epochs completed before it)
    step: int  # optimizer steps done in it
    seen: int  # images seen in it
    sums: dict[str, Tensor]  # Σ_batches n · term over those steps (scalars on the device)
    rng: dict[str, Tensor]  # rng_state() after the last step
    noise: Tensor  # the state of the batches' noise generator after the last step
    device: str  # the device type it ran on (RNG states do not carry across types)

    @classmethod
    def capture(
        cls,
        epoch: int,
        step: int,
        seen: int,
        sums: dict[str, Tensor],
        noise: torch.Generator,
        device: torch.device,
    ) -> Progress:
        return cls(epoch, step, seen, dict(sums), rng_state(device), noise.get_state(), device.type)

    def restore(
        self, noise: torch.Generator, device: torch.device
    ) -> tuple[int, int, dict[str, Tensor]]:
        """Put the RNGs back where they were; returns (step, seen, sums) to continue from."""
        if device.type != self.device:
            raise UsageError(
                f"the run was interrupted mid-epoch on {self.device}; resume it with "
                f"--device {self.device} (its random state does not carry to {device.type})"
            )
        try:
            set_rng_state(self.rng, device)
            noise.set_state(self.noise)
        except (KeyError, RuntimeError, TypeError) as err:  # a damaged checkpoint
            raise UsageError(f"the checkpoint's random state cannot be restored ({err})") from None
        return self.step, self.seen, {k: v.to(device) for k, v in self.sums.items()}

    def to_checkpoint(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """(JSON state, tensors) for save_checkpoint."""
        tensors = {f"sum.{k}": v for k, v in self.sums.items()}
        tensors.update({f"rng.{k}": v for k, v in self.rng.items()}, noise=self.noise)
        state = {
            "step": self.step,
            "seen": self.seen,
            "sums": list(self.sums),
            "device": self.device,
        }
        return state, tensors

    @classmethod
    def from_checkpoint(cls, epoch: int, state: dict[str, Any]) -> Progress | None:
        """The Progress in a checkpoint's state, or None for one written at an epoch's end."""
        if "step" not in state:
            return None
        tensors = state.get("tensors", {})
        try:
            sums = {name: tensors[f"sum.{name}"] for name in state["sums"]}
            rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
            rng["cpu"] = tensors["rng.cpu"]
            step, seen = int(state["step"]), int(state["seen"])
            return cls(epoch, step, seen, sums, rng, tensors["noise"], str(state["device"]))
        except (KeyError, TypeError, ValueError) as err:
            raise UsageError(
                f"the checkpoint's interrupted-epoch state is incomplete ({err})"
            ) from None


class Stop(KeyboardInterrupt):
    """Raised by the training loop when asked to stop: `progress` is where the epoch stood, or
    None when it stopped at an epoch's end (whose checkpoint is already written)."""

    def __init__(self, progress: Progress | None) -> None:
        super().__init__()
        self.progress = progress
