"""Register-to-register delay estimates on a synthesized ECP5 netlist, before place and route.

A routed build reports one critical path per 15-40 minutes; this reads the Yosys netlist
(`build/top.json`, the one nextpnr is given) and estimates the arrival time at every register and
block-RAM input with a per-hop model, so every path that would fail a clock shows at once,
grouped by the registers it starts and ends at. Each hop into a LUT costs a typical local route
plus the LUT; a carry chain's CIN costs only the carry; the PFUMX/L6MUX21 wide-function muxes
sit in the LUT's slice. The model knows nothing of placement: paths across the die route longer
than `ROUTE_NS`, so it is a lower bound of the routed delay on big designs, and the ranking, not
the figure, is what to read. Calibration: on the 2x2 ULX3S Q = 4 build it gives 14.6 ns for the
slowest path, against 14.05 ns routed (nextpnr's critical path, 4.1 ns logic + 10.0 ns routing).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

__all__ = ["Endpoint", "TimingGraph", "ROUTE_NS", "LUT_NS", "MUX_NS", "CARRY_NS", "CLK_TO_Q_NS", "BRAM_CLK_TO_Q_NS",
           "SETUP_NS", "group_endpoints"]

ROUTE_NS = 1.0          # one local route (nextpnr-ecp5's routed hops in a slice's neighbourhood: 0.7-1.4 ns)
LUT_NS = 0.42           # a LUT4 (and a CCU2C's LUT half)
MUX_NS = 0.2            # PFUMX / L6MUX21 from the LUTs of its own slice
CARRY_NS = 0.07         # CIN -> COUT of one CCU2C
CLK_TO_Q_NS = 0.52      # TRELLIS_FF
BRAM_CLK_TO_Q_NS = 4.0  # DP16KD without its output register (REGMODE NOREG)
SETUP_NS = 0.1
DPR_NS = 1.0            # TRELLIS_DPR16X4 read (RAD -> DO)
MULT_NS = 3.5           # MULT18X18D with unregistered ports

#: cells whose outputs start paths (their inputs end them)
SEQUENTIAL = {"TRELLIS_FF": CLK_TO_Q_NS, "DP16KD": BRAM_CLK_TO_Q_NS}
#: combinational cells, and the delay of an input -> output arc
COMBINATIONAL = {"LUT4", "PFUMX", "L6MUX21", "CCU2C", "TRELLIS_DPR16X4", "MULT18X18D"}
_SLICE_INPUTS = {"ALUT", "BLUT", "D0", "D1"}   # a wide mux's inputs from its own slice's LUTs


def arc_ns(cell_type: str, port: str) -> float:
    """Delay from an input `port` of a combinational cell to its output, with the route into it."""
    if cell_type == "LUT4":
        return ROUTE_NS + LUT_NS
    if cell_type in ("PFUMX", "L6MUX21"):
        return MUX_NS if port in _SLICE_INPUTS else ROUTE_NS + MUX_NS
    if cell_type == "CCU2C":
        return CARRY_NS if port == "CIN" else ROUTE_NS + LUT_NS
    if cell_type == "TRELLIS_DPR16X4":
        return ROUTE_NS + DPR_NS
    if cell_type == "MULT18X18D":
        return ROUTE_NS + MULT_NS
    raise ValueError(f"no delay model for cell type {cell_type!r}")


@dataclass(frozen=True)
class Endpoint:
    ns: float        # estimated arrival + setup at the input
    register: str    # the endpoint register (its output net's name, bit index dropped)
    port: str        # the input it arrives at (DI, CE, LSR, or a block RAM's port)
    start: str       # the register the path starts at
    levels: int      # combinational cells on the path
    source: str      # the endpoint register's source line (from Yosys' src attribute)


class TimingGraph:
    """The top module of a Yosys JSON netlist (`write_json`) as a timing graph."""

    def __init__(self, netlist: dict):
        modules = netlist.get("modules", {})
        tops = [m for m in modules.values() if m.get("attributes", {}).get("top")]
        if len(tops) != 1:
            raise ValueError(f"expected one top module in the netlist, found {len(tops)}")
        top = tops[0]
        self.cells = top["cells"]
        types = {c["type"] for c in self.cells.values()}
        if not types & set(SEQUENTIAL):
            raise ValueError(f"no ECP5 registers (TRELLIS_FF, DP16KD) in the netlist; cell types: {sorted(types)[:8]}")
        self._driver: dict[int, tuple[str, str]] = {}
        for name, cell in self.cells.items():
            for port, bits in cell["connections"].items():
                if cell["port_directions"].get(port) == "output":
                    for bit in bits:
                        if isinstance(bit, int):
                            self._driver[bit] = (name, port)
        # a bit's name: the shortest net name holding it that is the design's own (not a name
        # Yosys made up: `$`-names, or autonamed nets such as `x_TRELLIS_FF_Q_DI_LUT4_Z_B`)
        self._name: dict[int, str] = {}
        for net, info in top["netnames"].items():
            for bit in info["bits"]:
                if isinstance(bit, int):
                    old = self._name.get(bit)
                    if old is None or _name_rank(net, info) < _name_rank(old, top["netnames"][old]):
                        self._name[bit] = net
        # a cell's label: its output's name if the design's own, else its source line
        self._src = {name: _source_line(cell.get("attributes", {}).get("src", "")) for name, cell in self.cells.items()}
        self._arrival: dict[int, tuple[float, int | None]] = {}

    def arrival(self, bit: int) -> float:
        """Estimated time at which `bit` settles after the clock edge (iterative: paths are deep)."""
        stack, visiting = [bit], set()
        while stack:
            b = stack[-1]
            if b in self._arrival:
                stack.pop()
                continue
            drv = self._driver.get(b)
            cell = self.cells[drv[0]] if drv else None
            if cell is None or cell["type"] not in COMBINATIONAL:
                self._arrival[b] = (SEQUENTIAL.get(cell["type"], 0.0) if cell else 0.0, None)
                stack.pop()
                continue
            inputs = [(port, i) for port in self._timed_inputs(cell) for i in cell["connections"][port]
                      if isinstance(i, int)]
            pending = [i for _, i in inputs if i not in self._arrival]
            if pending:
                if b in visiting or any(i in visiting for i in pending):
                    raise ValueError(f"combinational loop through {self.name(b)}")
                visiting.add(b)
                stack.extend(pending)
                continue
            visiting.discard(b)
            best, via = 0.0, None
            for port, i in inputs:
                t = self._arrival[i][0] + arc_ns(cell["type"], port)
                if t > best:
                    best, via = t, i
            self._arrival[b] = (best, via)
            stack.pop()
        return self._arrival[bit][0]

    @staticmethod
    def _timed_inputs(cell) -> list[str]:
        if cell["type"] == "TRELLIS_DPR16X4":
            return ["RAD"]      # the write side is clocked
        return [p for p, d in cell["port_directions"].items() if d == "input"]

    def name(self, bit: int) -> str:
        return self._name.get(bit, f"<bit {bit}>")

    def register_name(self, bit: int) -> str:
        """The register driving `bit`, bit index dropped; its source line if its net has no name of the design's own."""
        name = self.name(bit)
        if _made_up(name):
            drv = self._driver.get(bit)
            return f"<{self._src[drv[0]]}>" if drv else name
        return re.sub(r"\[\d+\]$", "", name)

    def path(self, bit: int) -> list[int]:
        """The bits of the slowest path into `bit`, from its start."""
        self.arrival(bit)
        out = [bit]
        while self._arrival[out[-1]][1] is not None:
            out.append(self._arrival[out[-1]][1])
        return out[::-1]

    def endpoints(self, limit_ns: float) -> list[Endpoint]:
        """Every register or block-RAM input whose estimated arrival + setup exceeds `limit_ns`,
        slowest first."""
        found = []
        for name, cell in self.cells.items():
            if cell["type"] not in SEQUENTIAL:
                continue
            outputs = [b for p, bits in cell["connections"].items()
                       if cell["port_directions"].get(p) == "output" for b in bits if isinstance(b, int)]
            register = self.register_name(outputs[0]) if outputs else name
            src = self._src[name]
            for port, bits in cell["connections"].items():
                if cell["port_directions"].get(port) != "input" or port.startswith("CLK"):
                    continue
                for bit in bits:
                    if not isinstance(bit, int):
                        continue
                    ns = self.arrival(bit) + ROUTE_NS + SETUP_NS
                    if ns > limit_ns:
                        path = self.path(bit)
                        found.append(Endpoint(round(ns, 2), register, port, self.register_name(path[0]),
                                              len(path) - 1, src))
        return sorted(found, key=lambda e: (-e.ns, e.register, e.port))


_AUTONAME = re.compile(r"_(TRELLIS_FF|LUT4|CCU2C|PFUMX|L6MUX21|DP16KD|TRELLIS_DPR16X4|MULT18X18D)_")


def _made_up(name: str) -> bool:
    return name.startswith("$") or bool(_AUTONAME.search(name))


def _name_rank(name: str, info: dict) -> tuple:
    return (_made_up(name), bool(info.get("hide_name")), len(name), name)


def _source_line(src: str) -> str:
    """`gateware/top.py:246` out of a Yosys src attribute (the first of our own files, else the first)."""
    ours = re.findall(r"((?:gateware|hw|qjoule)/[\w/]+\.py:\d+)", src)
    if ours:
        return ours[0]
    first = src.split("|")[0]
    if "contextlib.py" in first:
        return "an FSM state"   # Amaranth's `with m.FSM()` registers carry its context manager's line
    return first.rsplit("/", 1)[-1]


def group_endpoints(endpoints: list[Endpoint]) -> list[dict]:
    """Endpoints grouped by (start register, end register), the slowest group first."""
    groups: dict[tuple[str, str], list[Endpoint]] = defaultdict(list)
    for e in endpoints:
        groups[(e.start, e.register)].append(e)
    rows = [{"start": s, "end": r, "endpoints": len(es), "worst_ns": es[0].ns, "levels": es[0].levels,
             "source": es[0].source} for (s, r), es in groups.items()]
    return sorted(rows, key=lambda g: (-g["worst_ns"], -g["endpoints"], g["start"], g["end"]))
