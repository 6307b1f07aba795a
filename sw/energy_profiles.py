"""Energy-model profiles: named parameter sets, each value with its source, loaded from JSON.

A profile is a JSON file (sw/profiles/<name>.json, or any path) of the form

    {"format": "qjoule-energy-profile", "version": 1, "name": "moons2017", "unit": "E_MAC16",
     "description": "...",
     "parameters": {"alpha": {"value": 1.0, "source": "why this value"}, ...}}

JSON has no comments, so every parameter carries its `source` next to its `value`. The
parameters (all required, see docs/energy.md):

    e_mac16     energy of one 16-bit MAC, in `unit`
    alpha       E_MAC(Q) = e_mac16 · (Q/16)^alpha
    p16         parallel MACs of the array at Q = 16
    p_exponent  p(Q) = p16 · (16/Q)^p_exponent        (the paper: 1, same area holds 16/Q more MACs)
    local_rel   E_L(16) / E_MAC16   (local register file / small SRAM access, one 16-bit word)
    main_rel    E_M(16) / E_MAC16   (main on-chip SRAM access)
    dram_rel    E_D(16) / E_MAC16   (off-chip DRAM access)
    mem_alpha   E_X(Q) = X_rel · e_mac16 · (Q/16)^mem_alpha for X in L, M, D (one Q-bit word)
    post_ops    (optional, default 3) E_MAC-priced operations per activation: E_C = E_MAC (N_c + post_ops A_s)
    pot_mac_rel (optional, default 1) energy of a power-of-two weight's shift-and-accumulate MAC over
                the uniform MAC at the same Q (applied to N_c of layers whose weights are PoT)

Calibrated profiles may add per-Q tables that replace a law at the Qs they list (other Qs fall
back to the law): `e_mac_table`, `p_table`, `reuse_w_table`, `reuse_a_table` (the measured local
access reductions that replace sqrt(p)), `local_table`, `main_table`, `dram_table` (per-word
energies), `idle_table` (energy of an idle lane-cycle) with `utilization_table` (working lane
MACs over all lane-cycles; the model adds idle_energy · N_c · (1/u − 1) to compute, 0 without
the tables). A table's value is {"<Q>": number}. Q = 32 stands for the float baseline.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from qjoule.errors import UserError

PROFILE_FORMAT = "qjoule-energy-profile"
PROFILE_VERSION = 1
SCALARS = ("e_mac16", "alpha", "p16", "p_exponent", "local_rel", "main_rel", "dram_rel", "mem_alpha")
#: Scalars a profile may leave out, with the paper's value.
OPTIONAL_SCALARS = {"post_ops": 3.0, "pot_mac_rel": 1.0}
TABLES = ("e_mac_table", "p_table", "reuse_w_table", "reuse_a_table", "local_table", "main_table", "dram_table",
          "idle_table", "utilization_table")
#: Parameters that must be > 0 (exponents may be any finite number).
POSITIVE = ("e_mac16", "p16", "local_rel", "main_rel", "dram_rel", "pot_mac_rel")


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    unit: str
    description: str
    parameters: dict[str, dict[str, Any]]  # name -> {"value": ..., "source": ...}

    def __getitem__(self, name: str) -> Any:
        return self.parameters[name]["value"]

    def has(self, name: str) -> bool:
        return name in self.parameters

    @property
    def post_ops(self) -> float:
        """MAC-priced operations per activation (bias, batch norm, activation: the paper's 3)."""
        return float(self["post_ops"]) if self.has("post_ops") else OPTIONAL_SCALARS["post_ops"]

    @property
    def pot_mac_rel(self) -> float:
        """A PoT shift-and-accumulate MAC over a uniform MAC at the same Q (1 unless set: see the
        profiles' sources; the PoT paper's >= 1.4x efficiency would be 1/1.4)."""
        return float(self["pot_mac_rel"]) if self.has("pot_mac_rel") else OPTIONAL_SCALARS["pot_mac_rel"]

    # -- the laws, vectorized over the bits per value (Q, or 32 for float) ------------------------

    def e_mac(self, bits: Any) -> np.ndarray:
        return self._with_table("e_mac_table", bits, lambda b: self["e_mac16"] * (b / 16.0) ** self["alpha"])

    def parallelism(self, bits: Any) -> np.ndarray:
        return self._with_table("p_table", bits, lambda b: self["p16"] * (16.0 / b) ** self["p_exponent"])

    def reuse_w(self, bits: Any) -> np.ndarray:
        """Local weight-access reduction: sqrt(p) in the paper, measured in a calibrated profile."""
        return self._with_table("reuse_w_table", bits, lambda b: np.sqrt(self.parallelism(b)))

    def reuse_a(self, bits: Any) -> np.ndarray:
        """Local activation-access reduction: sqrt(p) in the paper, measured in a calibrated profile."""
        return self._with_table("reuse_a_table", bits, lambda b: np.sqrt(self.parallelism(b)))

    def e_idle(self, bits: Any) -> np.ndarray:
        """Energy of an idle lane-cycle: 0 unless a calibration measured it."""
        return self._with_table("idle_table", bits, lambda b: np.zeros_like(b))

    def utilization(self, bits: Any) -> np.ndarray:
        """Working lane MACs over all lane-cycles: 1 (the paper's assumption) unless measured."""
        return self._with_table("utilization_table", bits, lambda b: np.ones_like(b))

    def e_local(self, bits: Any) -> np.ndarray:
        return self._with_table("local_table", bits, lambda b: self._word(b, "local_rel"))

    def e_main(self, bits: Any) -> np.ndarray:
        return self._with_table("main_table", bits, lambda b: self._word(b, "main_rel"))

    def e_dram(self, bits: Any) -> np.ndarray:
        return self._with_table("dram_table", bits, lambda b: self._word(b, "dram_rel"))

    def _word(self, bits: np.ndarray, rel: str) -> np.ndarray:
        return self[rel] * self["e_mac16"] * (bits / 16.0) ** self["mem_alpha"]

    def _with_table(self, table: str, bits: Any, law) -> np.ndarray:
        bits = np.asarray(bits, dtype=float)
        values = law(bits)
        if self.has(table):
            values = np.array(values, dtype=float, copy=True)
            for q, v in self[table].items():
                values = np.where(bits == float(q), float(v), values)
        return values

    # -- copies, overrides, JSON ------------------------------------------------------------------

    def with_overrides(self, overrides: dict[str, float], source: str = "command line --set") -> "Profile":
        """A copy with parameters replaced: `name` for a scalar, `table.Q` for one table entry."""
        params = copy.deepcopy(self.parameters)
        for key, value in overrides.items():
            name, _, q = key.partition(".")
            if (name in SCALARS or name in OPTIONAL_SCALARS) and not q:
                params[name] = {"value": value, "source": source}
            elif name in TABLES and q:
                entry = params.setdefault(name, {"value": {}, "source": source})
                entry["value"][str(_parse_q(q, key))] = value
                entry["source"] = f"{entry['source']}; {q} from {source}" if entry["source"] != source else source
            else:
                raise UserError(f"unknown energy parameter {key!r}; known: {', '.join(SCALARS)} "
                                f"and table entries like p_table.4")
        profile = dataclasses.replace(self, parameters=params)
        profile.validate()
        return profile

    def validate(self) -> None:
        for name in SCALARS:
            if name not in self.parameters:
                raise UserError(f"energy profile {self.name!r} has no parameter {name!r}")
        for name, entry in self.parameters.items():
            if name not in SCALARS and name not in OPTIONAL_SCALARS and name not in TABLES:
                raise UserError(f"energy profile {self.name!r} has unknown parameter {name!r}")
            if not isinstance(entry, dict) or "value" not in entry or not isinstance(entry.get("source"), str):
                raise UserError(f"energy profile {self.name!r} parameter {name!r} must be {{\"value\": .., \"source\": \"..\"}}")
            value = entry["value"]
            if name in TABLES:
                if not isinstance(value, dict):
                    raise UserError(f"energy profile {self.name!r} table {name!r} must map Q to a number, got {value!r}")
                for q, v in value.items():
                    _parse_q(q, f"{name}.{q}")
                    # An idle lane-cycle may cost nothing (clock-gated lanes); everything else is > 0.
                    _check_number(self.name, f"{name}.{q}", v, positive=name != "idle_table")
                    if name == "idle_table" and v < 0 or name == "utilization_table" and v > 1:
                        raise UserError(f"energy profile {self.name!r} parameter {name}.{q} must be in "
                                        f"{'[0, inf)' if name == 'idle_table' else '(0, 1]'}, got {v!r}")
            else:
                _check_number(self.name, name, value, positive=name in POSITIVE)

    def to_dict(self) -> dict[str, Any]:
        return {"format": PROFILE_FORMAT, "version": PROFILE_VERSION, "name": self.name, "unit": self.unit,
                "description": self.description, "parameters": copy.deepcopy(self.parameters)}

    def values(self) -> dict[str, Any]:
        """{name: value}, the compact form results record."""
        return {name: copy.deepcopy(entry["value"]) for name, entry in sorted(self.parameters.items())}


def accelerator_parallelism(config: Any) -> dict[str, float]:
    """p(Q) of an AccelConfig's array at every Q: rows · cols · lanes, as `p_table` overrides.

    The configured Q uses the configured datapath; other Qs the default datapath for that Q
    (qjoule.config.default_datapath), i.e. the same array re-generated at another Q. Float (32)
    gets half the 16-bit lanes, the same area holding MACs twice as wide.
    """
    from qjoule.config import default_datapath

    table = {f"p_table.{q}": float(config.rows * config.cols *
                                   ((config.datapath if q == config.q else default_datapath(q)) // q))
             for q in range(1, 17)}
    table["p_table.32"] = config.rows * config.cols / 2.0
    return table


def builtin_profiles() -> list[str]:
    folder = resources.files("qjoule.sw") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def load_profile(name_or_path: str) -> Profile:
    """A built-in profile by name (moons2017, horowitz45), a profile JSON file, or a folder holding profile.json."""
    if name_or_path in builtin_profiles():
        text = (resources.files("qjoule.sw") / "profiles" / f"{name_or_path}.json").read_text()
        where = f"built-in profile {name_or_path!r}"
    elif name_or_path.endswith(".json") or "/" in name_or_path or Path(name_or_path).is_dir():
        path = Path(name_or_path)
        if path.is_dir():  # a `qjoule calibrate --out` folder
            path = path / "profile.json"
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise UserError(f"energy profile file {str(path)!r} does not exist") from None
        except OSError as e:
            raise UserError(f"cannot read energy profile {name_or_path!r}: {e.__class__.__name__}") from None
        where = f"profile file {name_or_path!r}"
    else:
        raise UserError(f"unknown energy profile {name_or_path!r}; built-in: {', '.join(builtin_profiles())}, "
                        f"or give a path to a profile .json")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{where} is not valid JSON ({e.msg} at line {e.lineno})") from None
    return profile_from_dict(data, where)


def profile_from_dict(data: Any, where: str = "profile") -> Profile:
    if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
        raise UserError(f"{where} is not an energy profile (expected format {PROFILE_FORMAT!r})")
    if data.get("version") != PROFILE_VERSION:
        raise UserError(f"{where} has version {data.get('version')!r}, expected {PROFILE_VERSION}")
    if not isinstance(data.get("parameters"), dict):
        raise UserError(f"{where} has no 'parameters' object")
    profile = Profile(name=str(data.get("name", where)), unit=str(data.get("unit", "E_MAC16")),
                      description=str(data.get("description", "")), parameters=copy.deepcopy(data["parameters"]))
    profile.validate()
    return profile


def parse_overrides(items: list[str] | None) -> dict[str, float]:
    """`--set name=value` strings -> {name: float}, one-line errors for malformed ones."""
    out: dict[str, float] = {}
    for item in items or []:
        name, eq, text = item.partition("=")
        if not eq or not name.strip():
            raise UserError(f"--set expects name=value, got {item!r}")
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"--set {name.strip()}= expects a number, got {text!r}") from None
        out[name.strip()] = value
    return out


def _parse_q(q: Any, where: str) -> int:
    try:
        value = int(q)
    except (TypeError, ValueError):
        value = 0
    if not 1 <= value <= 32 or str(value) != str(q).strip():
        raise UserError(f"{where}: table key must be a Q in 1..32 (32 = float), got {q!r}")
    return value


def _check_number(profile: str, name: str, value: Any, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"energy profile {profile!r} parameter {name!r} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise UserError(f"energy profile {profile!r} parameter {name!r} must be > 0, got {value!r}")
