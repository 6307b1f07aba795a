"""Register-to-register delay estimates on a synthesized ECP5 or iCE40 netlist, before place and route.

A routed build reports one critical path per 15-40 minutes (ULX3S); this reads the Yosys netlist
(`build/top.json`, the one nextpnr is given) and estimates the arrival time at every register and block-RAM input
with a per-hop model, so every path that would fail a clock shows at once, grouped by the
registers it starts and ends at. The family's model is chosen from the cell types present. Each
hop into a LUT costs a typical route plus the LUT; a carry chain's carry-in costs only the carry;
cells that share a slice or logic cell (ECP5's PFUMX/L6MUX21 and their LUTs, an iCE40 LUT and the
carry feeding its I3, a LUT and the flip-flop it alone drives) skip the route. The model knows
nothing of placement: paths across the die route longer than the route constant, so on big designs
it is a lower bound of the routed delay, and the ranking, not the figure, is what to read.
Calibration: on the 2x2 ULX3S Q = 4 build it gives 14.6 ns for the slowest path, against 14.05 ns
routed (nextpnr's critical path, 4.1 ns logic + 10.0 ns routing). On the iCEBreaker (UP5K, 92 % of
its logic cells) Q = 4 build, 31.44 ns against 31.56 ns routed (10.95 ns logic + 20.6 ns routing),
the same 11 LUTs into `accel.seq.t_at_last` (the estimate starts them at `accel.seq.t`, nextpnr at
`accel.seq.main_state`: two inputs of the first LUT); at Q = 2, 31.44 ns against 34.98 ns routed,
the same path (`accel.seq.g` -> `accel.seq.gc_last`) with two long routes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

__all__ = ["Endpoint", "TimingGraph", "ECP5", "ICE40", "ROUTE_NS", "LUT_NS", "MUX_NS", "CARRY_NS", "CLK_TO_Q_NS",
           "BRAM_CLK_TO_Q_NS", "SETUP_NS", "family_of", "group_endpoints"]

# ECP5 (the ULX3S's LFE5U-85F, nextpnr-ecp5)
ROUTE_NS = 1.0          # one local route (nextpnr-ecp5's routed hops in a slice's neighbourhood: 0.7-1.4 ns)
LUT_NS = 0.42           # a LUT4 (and a CCU2C's LUT half)
MUX_NS = 0.2            # PFUMX / L6MUX21 from the LUTs of its own slice
CARRY_NS = 0.07         # CIN -> COUT of one CCU2C
CLK_TO_Q_NS = 0.52      # TRELLIS_FF
BRAM_CLK_TO_Q_NS = 4.0  # DP16KD without its output register (REGMODE NOREG)
SETUP_NS = 0.1
DPR_NS = 1.0            # TRELLIS_DPR16X4 read (RAD -> DO)
MULT_NS = 3.5           # MULT18X18D with unregistered ports


class _Family:
    """A family's delay model: which cells start and end paths, and the delay of each hop (ns)."""

    def timed_inputs(self, cell) -> list[str]:
        """The inputs of a combinational cell that its outputs depend on within the clock cycle."""
        return [p for p, d in cell["port_directions"].items() if d == "input"]


class Ecp5(_Family):
    name = "ECP5"
    registers = "TRELLIS_FF, DP16KD"
    _clock_to_out = {"TRELLIS_FF": CLK_TO_Q_NS, "DP16KD": BRAM_CLK_TO_Q_NS}
    _combinational = {"LUT4", "PFUMX", "L6MUX21", "CCU2C", "TRELLIS_DPR16X4", "MULT18X18D"}
    _slice_inputs = {"ALUT", "BLUT", "D0", "D1"}   # a wide mux's inputs from its own slice's LUTs

    def clock_to_out(self, cell) -> float | None:
        """Clock-to-output of a cell whose outputs start paths (its inputs end them); None if it has none."""
        return self._clock_to_out.get(cell["type"])

    def is_combinational(self, cell) -> bool:
        return cell["type"] in self._combinational

    def timed_inputs(self, cell) -> list[str]:
        # a distributed RAM's write side is clocked
        return ["RAD"] if cell["type"] == "TRELLIS_DPR16X4" else super().timed_inputs(cell)

    def arc_ns(self, cell_type: str, port: str, driver: str | None) -> float:
        """Input `port` -> output of a combinational cell, with the route into it from a `driver` cell."""
        if cell_type == "LUT4":
            return ROUTE_NS + LUT_NS
        if cell_type in ("PFUMX", "L6MUX21"):
            return MUX_NS if port in self._slice_inputs else ROUTE_NS + MUX_NS
        if cell_type == "CCU2C":
            return CARRY_NS if port == "CIN" else ROUTE_NS + LUT_NS
        if cell_type == "TRELLIS_DPR16X4":
            return ROUTE_NS + DPR_NS
        return ROUTE_NS + MULT_NS

    def is_clock(self, cell_type: str, port: str) -> bool:
        return port.startswith("CLK")

    def into_register_ns(self, cell_type: str, port: str, driver: str | None, fanout: int) -> float:
        """From the driving net's arrival to the register input `port`: route and setup."""
        return ROUTE_NS + SETUP_NS


class Ice40(_Family):
    """iCE40 UltraPlus (UP5K, nextpnr-ice40). nextpnr's cell delays are icestorm's
    `timings_up5k.txt` x 1.33 (a LUT's I3 -> O 0.87 ns, I2 1.21 ns; clock-to-Q 1.39 ns), read
    off the routed report; a route even inside one tile is 1.76 ns (LocalMux + InMux), so
    `ROUTE_NS` is near the least a hop costs. The RAM and MAC16 figures are the table's x 1.33,
    not seen on a routed critical path."""
    name = "iCE40"
    registers = "SB_DFF*, SB_RAM40_4K*, SB_SPRAM256KA"
    ROUTE_NS = 1.8           # a routed hop: 1.76 ns within a tile (the least), 2.3-3 ns to a neighbour
    LUT_NS = {"I0": 1.29, "I1": 1.24, "I2": 1.21, "I3": 0.87}   # abc9 knows: the late input goes to I3
    CARRY_NS = 0.28          # CI -> CO along the chain
    CARRY_IN_NS = 0.68       # I0/I1 (the logic cell's in1/in2) -> CO; also a feed-in cell for a CI from logic
    CARRY_TO_LUT_NS = 0.66   # CO -> I3 of the next logic cell: the chain's own wire, no general route
    CLK_TO_Q_NS = 1.39       # SB_DFF* in a logic cell
    BRAM_CLK_TO_Q_NS = 1.18  # SB_RAM40_4K RCLK -> RDATA
    SPRAM_CLK_TO_Q_NS = 1.83  # SB_SPRAM256KA CLOCK -> DATAOUT
    MAC_NS = 10.8            # SB_MAC16 16x16 unregistered, A/B -> O[31]; nextpnr does not time it (below)
    MAC_CLK_TO_Q_NS = 1.9    # SB_MAC16 with its output (accumulator) registers
    SR_SETUP_NS = 0.53       # R/S of a flip-flop
    RAM_SETUP_NS = 0.4       # block RAM, SPRAM and MAC16 inputs (0.14-0.5 ns)
    _clocks = {"C", "RCLK", "RCLKN", "WCLK", "WCLKN", "CLOCK", "CLK"}
    _mac16_registers = ("A_REG", "B_REG", "C_REG", "D_REG", "TOP_8x8_MULT_REG", "BOT_8x8_MULT_REG",
                        "PIPELINE_16x16_MULT_REG1", "PIPELINE_16x16_MULT_REG2")

    def clock_to_out(self, cell) -> float | None:
        t = cell["type"]
        if t == "SB_MAC16":
            return self._mac16_clock_to_out(cell)
        return (self.CLK_TO_Q_NS if t.startswith("SB_DFF") else self.BRAM_CLK_TO_Q_NS if t.startswith("SB_RAM40_4K")
                else self.SPRAM_CLK_TO_Q_NS if t == "SB_SPRAM256KA" else None)

    def _mac16_clock_to_out(self, cell) -> float | None:
        """A MAC16 with none of its registers used is a combinational multiplier (its CLK tied low:
        nextpnr then times it as a register on a clock of its own, so its paths are not in the Fmax);
        one with registers starts paths, after the multiply when only its inputs are registered."""
        if 1 in (_param(cell, "TOPOUTPUT_SELECT"), _param(cell, "BOTOUTPUT_SELECT")):
            return self.MAC_CLK_TO_Q_NS     # the accumulator registers drive O
        return self.MAC_NS if any(_param(cell, n) for n in self._mac16_registers) else None

    def is_combinational(self, cell) -> bool:
        return cell["type"] in ("SB_LUT4", "SB_CARRY") or (cell["type"] == "SB_MAC16" and
                                                          self.clock_to_out(cell) is None)

    def arc_ns(self, cell_type: str, port: str, driver: str | None) -> float:
        if cell_type == "SB_LUT4":
            if driver == "SB_CARRY" and port == "I3":
                return self.CARRY_TO_LUT_NS + self.LUT_NS["I3"]
            return self.ROUTE_NS + self.LUT_NS.get(port, self.LUT_NS["I0"])
        if cell_type == "SB_CARRY":
            if port == "CI" and driver == "SB_CARRY":
                return self.CARRY_NS
            return self.ROUTE_NS + self.CARRY_IN_NS
        return self.ROUTE_NS + self.MAC_NS

    def is_clock(self, cell_type: str, port: str) -> bool:
        return port in self._clocks

    def into_register_ns(self, cell_type: str, port: str, driver: str | None, fanout: int) -> float:
        if not cell_type.startswith("SB_DFF"):
            return self.ROUTE_NS + self.RAM_SETUP_NS
        if port == "D":
            if driver == "SB_LUT4" and fanout == 1:
                return 0.0      # packed in the flip-flop's logic cell: its LUT delay was the setup
            return self.ROUTE_NS + self.LUT_NS["I0"]    # through a pass-through LUT in the logic cell
        if port in ("R", "S"):
            return self.ROUTE_NS + self.SR_SETUP_NS
        return self.ROUTE_NS     # E: no setup of its own


ECP5, ICE40 = Ecp5(), Ice40()


def family_of(cell_types: set[str]):
    """The delay model of the one family whose registers the netlist holds."""
    found = [f for f in (ECP5, ICE40) if any(f.clock_to_out({"type": t}) is not None for t in cell_types)]
    if not found:
        raise ValueError(f"no ECP5 ({ECP5.registers}) or iCE40 ({ICE40.registers}) registers in the netlist; "
                         f"cell types: {sorted(cell_types)[:8]}")
    if len(found) > 1:
        raise ValueError("the netlist mixes ECP5 and iCE40 registers")
    return found[0]


def _param(cell, name: str) -> int:
    """A cell parameter as Yosys writes it (a binary string, or an int); 0 when absent or not binary."""
    value = cell.get("parameters", {}).get(name, 0)
    try:
        return int(value, 2) if isinstance(value, str) else int(value)
    except ValueError:
        return 0


@dataclass(frozen=True)
class Endpoint:
    ns: float        # estimated arrival + setup at the input
    register: str    # the endpoint register (its output net's name, bit index dropped)
    port: str        # the input it arrives at (DI, CE, LSR; D, E, R, S; or a block RAM's port)
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
        self.model = family_of({c["type"] for c in self.cells.values()})
        self._driver: dict[int, tuple[str, str]] = {}
        self._fanout: dict[int, int] = defaultdict(int)   # cell inputs a bit reaches
        for name, cell in self.cells.items():
            for port, bits in cell["connections"].items():
                output = cell["port_directions"].get(port) == "output"
                for bit in bits:
                    if isinstance(bit, int):
                        if output:
                            self._driver[bit] = (name, port)
                        else:
                            self._fanout[bit] += 1
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

    def _driver_type(self, bit: int) -> str | None:
        drv = self._driver.get(bit)
        return self.cells[drv[0]]["type"] if drv else None

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
            if cell is None or not self.model.is_combinational(cell):
                # a register's output, or a net from outside (a pin, a constant cell): a start point
                self._arrival[b] = ((self.model.clock_to_out(cell) or 0.0) if cell else 0.0, None)
                stack.pop()
                continue
            inputs = [(port, i) for port in self.model.timed_inputs(cell) for i in cell["connections"][port]
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
                t = self._arrival[i][0] + self.model.arc_ns(cell["type"], port, self._driver_type(i))
                if t > best:
                    best, via = t, i
            self._arrival[b] = (best, via)
            stack.pop()
        return self._arrival[bit][0]

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
            if self.model.clock_to_out(cell) is None:
                continue
            outputs = [b for p, bits in cell["connections"].items()
                       if cell["port_directions"].get(p) == "output" for b in bits if isinstance(b, int)]
            register = self.register_name(outputs[0]) if outputs else name
            src = self._src[name]
            for port, bits in cell["connections"].items():
                if cell["port_directions"].get(port) != "input" or self.model.is_clock(cell["type"], port):
                    continue
                for bit in bits:
                    if not isinstance(bit, int):
                        continue
                    ns = self.arrival(bit) + self.model.into_register_ns(cell["type"], port, self._driver_type(bit),
                                                                         self._fanout[bit])
                    if ns > limit_ns:
                        path = self.path(bit)
                        found.append(Endpoint(round(ns, 2), register, port, self.register_name(path[0]),
                                              len(path) - 1, src))
        return sorted(found, key=lambda e: (-e.ns, e.register, e.port))


_AUTONAME = re.compile(r"_(TRELLIS_FF|LUT4|CCU2C|PFUMX|L6MUX21|DP16KD|TRELLIS_DPR16X4|MULT18X18D|SB_[A-Z0-9]+)_")


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
