"""8N1 UART receiver and transmitter with a fixed baud divisor (clock cycles per bit).

Bytes go in and out as `amaranth.lib.stream` bytes. The line idles high; a character is a start
bit (low), eight data bits LSB first and a stop bit (high). The receiver cannot hold the line
back: a byte that arrives while the previous one is still unread is dropped (`overrun` pulses),
and a character whose stop bit reads low is dropped (`framing_error` pulses; the receiver then
waits for the line to go high again, so a break is one error, not many).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "baud_divisor", "check_divisor"]

#: Below this the mid-bit sample has no margin left for a baud-rate mismatch.
MIN_DIVISOR = 4


def baud_divisor(clk_freq: float, baud: int, tolerance: float = 0.02) -> int:
    """Clock cycles per bit for `baud` at `clk_freq` Hz; ValueError if the rounding error exceeds
    `tolerance` (an 8N1 receiver tolerates about 4% in total, shared by both ends)."""
    if not clk_freq > 0 or not isinstance(baud, int) or baud <= 0:
        raise ValueError(f"clk_freq must be > 0 and baud a positive integer, got {clk_freq!r}, {baud!r}")
    divisor = round(clk_freq / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud {baud!r} is too fast for a {clk_freq / 1e6:g} MHz clock "
                         f"(divisor {divisor}, at least {MIN_DIVISOR})")
    error = abs(clk_freq / divisor - baud) / baud
    if error > tolerance:
        raise ValueError(f"baud {baud!r} at {clk_freq / 1e6:g} MHz is off by {error:.1%} (divisor {divisor}), "
                         f"more than {tolerance:.0%}")
    return divisor


def check_divisor(divisor: int) -> int:
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be an integer >= {MIN_DIVISOR} (clock cycles per bit), not {divisor!r}")
    return divisor


class _BaudTimed(wiring.Component):
    """A component timed by a fixed baud divisor, checked once here."""

    def __init__(self, divisor: int, members: dict):
        self._divisor = check_divisor(divisor)
        super().__init__(members)

    @property
    def divisor(self) -> int:
        return self._divisor


class UARTRx(_BaudTimed):
    """Receiver: `rx` pin in (synchronised here), bytes out on `o`.

    The start bit's falling edge starts a timer; every bit is sampled in its middle.
    """

    def __init__(self, divisor: int):
        super().__init__(divisor, {
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        rx = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(div))
        bit = Signal(range(8))
        shreg = Signal(8)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM(name="rx"):
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                    # a glitch shorter than half a bit is not a start bit
                    with m.If(rx):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(div - 1), shreg.eq(Cat(shreg[1:], rx)), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(~rx):
                        m.d.comb += self.framing_error.eq(1)
                        m.next = "BREAK"
                    with m.Else():
                        # the held byte is still unread (and not leaving now): drop the new one
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.comb += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        m.next = "IDLE"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTx(_BaudTimed):
    """Transmitter: bytes in on `i`, `tx` pin out (registered, idle high)."""

    def __init__(self, divisor: int):
        super().__init__(divisor, {
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        timer = Signal(range(div))
        # bits still to put on the line after the start bit: 8 data, the stop bit, and one more
        # step so the stop bit lasts a whole bit time before `ready` comes back
        left = Signal(range(11))
        shreg = Signal(9)

        with m.If(left == 0):
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid):
                m.d.sync += [self.tx.eq(0), shreg.eq(Cat(self.i.payload, Const(1, 1))),
                             left.eq(10), timer.eq(div - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [self.tx.eq(shreg[0]), shreg.eq(Cat(shreg[1:], Const(1, 1))),
                             left.eq(left - 1), timer.eq(div - 1)]
        return m
