"""Mutants of the generated design and of the integer model file, to test the verification itself.

A mutant is a small deliberate fault; the cocotb whole-network check must notice it (a differing
value, a hang, a stream protocol error). Every mutant is named and reproducible: its name says
what was changed where, and applying it is a pure function of the name's parts.

Design mutants edit the emitted Verilog text of one module (`module \\qjoule_accel.seq.pp0`, ...),
on one `assign` whose right-hand side is matched literally (the occurrence index picks among
equal ones; the `$N` net numbers are not used, they shift whenever the gateware changes):

- `mux-swap`:     `c ? a : b`  -> `c ? b : a`      (swap two operands of a multiplexer)
- `operand-swap`: `a - b` -> `b - a` for a non-commutative operator (-, <, <=, >, >=, <<, >>, >>>)
- `off-by-one`:   `x + N'h1` -> `x + N'h2`  (a counter or address stepping by two)
- `drop-term`:    `a + b` -> `a`  (a carry or rounding term of a sum left out)

Model-file mutants edit the `.qjm` the accelerator is programmed with, while the golden model
keeps the original (what the export should have produced):

- `weight-bit`:    one bit of one stored weight code flipped;
- `drop-rounding`: a layer's post-processing bias without its round-half-up term 2^(s-1).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from qjoule.errors import UserError
from qjoule.sw.intmodel import IntModel, weight_dtype

VERILOG_OPERATORS = ("mux-swap", "operand-swap", "off-by-one", "drop-term")
MODEL_OPERATORS = ("weight-bit", "drop-rounding")

_MODULE = re.compile(r"^module (\\\S+|[A-Za-z_]\w*)\s*\(.*?^endmodule", re.M | re.S)
_ASSIGN = re.compile(r"^(\s*assign\s+\S+\s*=\s*)(.*?);[ \t]*$", re.M)
_ATOM = r"(?:\$signed\()?\\?[A-Za-z_$][\w$.]*(?:\s*\[[^\]]+\])?(?:\s*\))?|\d+'[hdb][0-9a-fA-F_]+"
_RHS = {
    "mux-swap": re.compile(rf"^(?P<c>{_ATOM})\s+\?\s+(?P<a>{_ATOM})\s+:\s+(?P<b>{_ATOM})$"),
    "operand-swap": re.compile(rf"^(?P<a>{_ATOM})\s+(?P<op>-|<|<=|>|>=|<<|>>|>>>)\s+(?P<b>{_ATOM})$"),
    "off-by-one": re.compile(rf"^(?P<a>{_ATOM})\s+\+\s+(?P<w>\d+)'h1$"),
    "drop-term": re.compile(rf"^(?P<a>{_ATOM})\s+\+\s+(?P<b>{_ATOM})$"),
}


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One fault. Design mutants: `module`, `rhs` (the right-hand side as emitted), `occurrence`.
    Model mutants: `layer`, `index` (flat weight index), `bit`."""

    operator: str
    module: str = ""
    rhs: str = ""
    occurrence: int = 0
    layer: str = ""
    index: int = 0
    bit: int = 0

    @property
    def target(self) -> str:
        return "verilog" if self.operator in VERILOG_OPERATORS else "model"

    @property
    def kind(self) -> str:
        """The four kinds of the issue: weight bit, operand swap, off-by-one, dropped term."""
        return {"mux-swap": "operand-swap", "drop-rounding": "drop-term"}.get(self.operator, self.operator)

    @property
    def name(self) -> str:
        if self.target == "verilog":
            return f"{self.operator}@{self.module.lstrip(chr(92))}:`{self.rhs}`#{self.occurrence}"
        if self.operator == "weight-bit":
            return f"weight-bit@{self.layer}[{self.index}].bit{self.bit}"
        return f"drop-rounding@{self.layer}"

    def apply_verilog(self, text: str) -> str:
        if self.target != "verilog":
            raise ValueError(f"{self.name} is a model mutant")
        start, end = _module_span(text, self.module)
        body = text[start:end]
        hits = [m for m in _ASSIGN.finditer(body) if m.group(2).strip() == self.rhs]
        if self.occurrence >= len(hits):
            raise UserError(f"mutant {self.name}: the module has {len(hits)} such assignments")
        hit = hits[self.occurrence]
        new = _mutate_rhs(self.operator, self.rhs)
        # a trailing space ends an escaped identifier (`\\$12 ;`) before the semicolon
        body = body[:hit.start(2)] + new + " " + body[hit.end(2):]
        return text[:start] + body + text[end:]

    def apply_model(self, model: IntModel) -> IntModel:
        if self.target != "model":
            raise ValueError(f"{self.name} is a design mutant")
        layer = model.layer(self.layer)
        arrays = dict(model.arrays)
        if self.operator == "weight-bit":
            w = arrays[layer["weight"]].copy()
            flat = w.reshape(-1)
            flat[self.index] = _flip_code(int(flat[self.index]), self.bit, model.q, layer.get("w_kind", "uniform"))
            arrays[layer["weight"]] = w.astype(weight_dtype(model.q, layer.get("w_kind", "uniform")))
        else:
            if layer.get("q_out") == 1 or layer["pp_shift"] < 1:
                raise UserError(f"mutant {self.name}: layer {self.layer} has no rounding term (sign output)")
            arrays[layer["pp_bias"]] = arrays[layer["pp_bias"]] - (1 << (layer["pp_shift"] - 1))
        return IntModel(model.header, arrays)


def _flip_code(value: int, bit: int, q: int, w_kind: str) -> int:
    """Flip one bit of a weight's stored code. Q = 1 weights are ±1 (one bit): the flip negates."""
    if q == 1:
        return -value
    lo, hi = -(1 << (q - 1)), (1 << (q - 1)) - 1
    code = (value & ((1 << q) - 1)) ^ (1 << bit)      # two's complement Q-bit code
    flipped = code - (1 << q) if code >> (q - 1) else code
    if w_kind == "pot" or not lo <= flipped <= hi:
        raise UserError(f"weight-bit mutant of {value} at bit {bit} is not a Q={q} code")
    return flipped


def _module_span(text: str, module: str) -> tuple[int, int]:
    for m in _MODULE.finditer(text):
        if m.group(1) == module:
            return m.start(), m.end()
    raise UserError(f"no module {module!r} in the Verilog")


def _mutate_rhs(operator: str, rhs: str) -> str:
    m = _RHS[operator].match(rhs)
    if m is None:
        raise UserError(f"{operator} does not apply to `{rhs}`")
    if operator == "mux-swap":
        return f"{m['c']} ? {m['b']} : {m['a']}"
    if operator == "operand-swap":
        return f"{m['b']} {m['op']} {m['a']}"
    if operator == "off-by-one":
        width = max(int(m["w"]), 2)
        return f"{m['a']} + {width}'h2"
    return m["a"]


def verilog_sites(text: str, operator: str, module_prefix: str = "") -> list[Mutant]:
    """Every place `operator` applies, in module order then text order (deterministic)."""
    if operator not in VERILOG_OPERATORS:
        raise UserError(f"unknown design mutation {operator!r}; expected one of {', '.join(VERILOG_OPERATORS)}")
    sites = []
    for m in _MODULE.finditer(text):
        module = m.group(1)
        if not module.lstrip("\\").startswith(module_prefix):
            continue
        seen: dict[str, int] = {}
        for a in _ASSIGN.finditer(m.group(0)):
            rhs = a.group(2).strip()
            occurrence = seen.get(rhs, 0)
            seen[rhs] = occurrence + 1
            if _RHS[operator].match(rhs) and not _equivalent(operator, rhs):
                sites.append(Mutant(operator, module=module, rhs=rhs, occurrence=occurrence))
    return sites


def _equivalent(operator: str, rhs: str) -> bool:
    """Mutations that cannot change anything: swapping equal branches, dropping `+ 0`."""
    m = _RHS[operator].match(rhs)
    if operator == "mux-swap":
        return m["a"] == m["b"]
    if operator == "drop-term":
        return bool(re.fullmatch(r"\d+'h0+", m["b"]))
    if operator == "operand-swap":
        return m["a"] == m["b"]
    return False


def sample_verilog_mutants(text: str, per_operator: int, seed: int, module_prefix: str = "qjoule_accel") -> list[Mutant]:
    """`per_operator` sites of each design operator, drawn with `seed` (sorted by name)."""
    rng = np.random.default_rng(seed)
    out = []
    for operator in VERILOG_OPERATORS:
        sites = verilog_sites(text, operator, module_prefix)
        picks = rng.choice(len(sites), size=min(per_operator, len(sites)), replace=False) if sites else []
        out += [sites[i] for i in sorted(int(p) for p in picks)]
    return out


def weight_bit_mutants(model: IntModel, count: int, seed: int) -> list[Mutant]:
    """`count` single-bit flips of weight codes, layers and positions drawn with `seed`."""
    rng = np.random.default_rng(seed)
    layers = [layer for layer in model.layers if "weight" in layer and layer.get("w_kind", "uniform") != "pot"]
    out = []
    for _ in range(count):
        layer = layers[int(rng.integers(len(layers)))]
        size = model.arrays[layer["weight"]].size
        bit = 0 if model.q == 1 else int(rng.integers(model.q))
        out.append(Mutant("weight-bit", layer=layer["name"], index=int(rng.integers(size)), bit=bit))
    return out


def drop_rounding_mutants(model: IntModel) -> list[Mutant]:
    """One per layer whose post-processing rounds (every layer with a Q >= 2 output, and the logits)."""
    return [Mutant("drop-rounding", layer=layer["name"]) for layer in model.layers
            if "pp_bias" in layer and layer.get("q_out") != 1]


def parse(name: str) -> Mutant:
    """The mutant a `Mutant.name` describes (to rerun one mutant from a report)."""
    m = re.fullmatch(r"(?P<op>[a-z-]+)@(?P<module>[^:]+):`(?P<rhs>.*)`#(?P<k>\d+)", name)
    if m and m["op"] in VERILOG_OPERATORS:
        # a module name with a dot is an escaped identifier (Amaranth names submodules by path)
        module = "\\" + m["module"] if "." in m["module"] else m["module"]
        return Mutant(m["op"], module=module, rhs=m["rhs"], occurrence=int(m["k"]))
    m = re.fullmatch(r"weight-bit@(?P<layer>[^\[]+)\[(?P<i>\d+)\]\.bit(?P<b>\d+)", name)
    if m:
        return Mutant("weight-bit", layer=m["layer"], index=int(m["i"]), bit=int(m["b"]))
    m = re.fullmatch(r"drop-rounding@(?P<layer>.+)", name)
    if m:
        return Mutant("drop-rounding", layer=m["layer"])
    raise UserError(f"not a mutant name: {name!r}")
