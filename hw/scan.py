"""Board wrapper that keeps every port of a design observable through two pins.

Synthesis removes logic whose outputs reach no pin. A design with hundreds of port bits (the MAC
array's accumulators) cannot go to pins directly, so the wrapper threads them through scan
registers: every input bit comes from a shift register fed by one input pin, and every output bit
is captured, every N cycles, into a shift register whose end drives one output pin. Nothing of the
design can be optimized away, and the wrapper adds only flip-flops and one 2:1 mux per output bit.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib import io, wiring

__all__ = ["ScanWrapper", "port_values"]


def port_values(component: wiring.Component) -> tuple[list[Value], list[Value]]:
    """The component's (inputs, outputs) as flat Values, from its signature."""
    inputs, outputs = [], []
    for _path, member, value in component.signature.flatten(component):
        (inputs if member.flow == wiring.In else outputs).append(Value.cast(value))
    return inputs, outputs


class ScanWrapper(Elaboratable):
    """`design` (a wiring.Component, or an Elaboratable with `inputs`/`outputs` lists) between a
    scan-in pin and a scan-out pin. On a board, the pins are the UART's rx and tx."""

    def __init__(self, design, inputs: list[Value] | None = None, outputs: list[Value] | None = None):
        if inputs is None or outputs is None:
            inputs, outputs = port_values(design)
        self.design = design
        self.inputs, self.outputs = inputs, outputs
        self.scan_in_bits = sum(len(v) for v in inputs)
        self.scan_out_bits = sum(len(v) for v in outputs)
        self.sdi = Signal()
        self.sdo = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.design = self.design

        scan_in = Signal(max(self.scan_in_bits, 1))
        m.d.sync += scan_in.eq(Cat(scan_in[1:], self.sdi))
        m.d.comb += Cat(*self.inputs).eq(scan_in)

        scan_out = Signal(max(self.scan_out_bits, 1))
        period = max(self.scan_out_bits, 1)
        count = Signal(range(period))
        # The capture strobe fans out to every scan-out flop: it comes from a flop itself (set
        # one cycle ahead), so only routing sits on that path.
        capture = Signal(init=int(period == 1))
        m.d.sync += capture.eq(count == period - 2 if period >= 2 else 1)
        with m.If(capture):
            m.d.sync += [count.eq(0), scan_out.eq(Cat(*self.outputs))]
        with m.Else():
            m.d.sync += [count.eq(count + 1), scan_out.eq(scan_out[1:])]
        m.d.comb += self.sdo.eq(scan_out[0])

        if platform is not None:
            uart = platform.request("uart", 0, dir="-")
            m.submodules.rx_pin = rx_pin = io.Buffer("i", uart.rx)
            m.submodules.tx_pin = tx_pin = io.Buffer("o", uart.tx)
            m.d.comb += [self.sdi.eq(rx_pin.i), tx_pin.o.eq(self.sdo)]
        return m
