"""The inference energy model of Moons et al. (2017), eq. 3-5, vectorized over networks x Q x memory.

    E_inf  = E_HW + E_DRAM,   E_HW = E_C + E_W + E_A
    E_C    = E_MAC · (N_c + 3·A_s)        (the 3 is the profile's post_ops; N_c of a layer with
                                           power-of-two weights weighs the profile's pot_mac_rel)
    E_W    = E_M · N_s   + E_L · N_c / sqrt(p)
    E_A    = 2·E_M · A_s + E_L · N_c / sqrt(p)
    E_DRAM = E_D · (s_x²·c·f + 2·f_s + w_s)

with E_MAC, E_L, E_M, E_D, p functions of the bits per value (profile laws, sw/energy_profiles.py),
and the two sqrt(p) replaced by the measured weight/activation reuse in a calibrated profile
(which may also price idle lanes: E_C gains e_idle · N_c · (1/u − 1) at measured utilization u).
Our readings of what the paper leaves open (docs/energy.md):

- N_c counts the first layer's MACs `ceil(8/Q)` times (the hardware's shifted passes over 8-bit
  pixels); the image's DRAM words use the paper's f = 8/Q (pixels packed into Q-bit words).
- M is in Mb = 2^20 bits (the paper: a 2 Mb memory holds "only 131k 16-bit weights").
  Weights get M bits: w_s = max(0, N_s − floor(M/Q)) words re-fetched per inference.
  Activations get another M bits, half for a layer's inputs, half for its outputs: every layer
  output (conv, pool, dense) beyond floor(M/2/Q) words is stored to DRAM and fetched back by the
  next layer, so f_s = Σ_layers max(0, out − floor(M/2/Q)) and it counts twice.
- Energies come in the profile's unit (E_MAC16 for moons2017, pJ for horowitz45).

All functions take numpy arrays and broadcast; `NetArrays` holds per-layer counts of many
networks padded to one layer axis (the last axis).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from qjoule.errors import UserError

from .energy_profiles import Profile
from .netstats import FLOAT_BITS, PIXEL_BITS, network_stats

#: Bits in one Mb, the unit of memory sizes (2^20: the paper's 2 Mb holds 131k 16-bit weights).
MB_BITS = 1 << 20
#: Terms of the breakdown, in the order plots stack them.
TERMS = ("compute", "local", "main", "dram")


@dataclasses.dataclass(frozen=True)
class NetArrays:
    """Per-layer counts of N networks, shape (N, L) (zero-padded), and per-network totals (N,)."""

    names: list[list[str]]       # layer names per network (unpadded)
    macs: np.ndarray             # (N, L) N_c per layer, one pass
    first: np.ndarray            # (N, L) 1.0 on each network's first layer
    weights_and_biases: np.ndarray  # (N, L)
    activations: np.ndarray      # (N, L) A_s per layer
    out_values: np.ndarray       # (N, L) values each layer writes on chip
    input_values: np.ndarray     # (N,) c·s_x² pixels of the image
    pot: np.ndarray | None = None  # (N, L) 1.0 on layers with power-of-two weights (w_kind "pot")

    def mac_scale(self, profile: Profile) -> np.ndarray:
        """(N, L) factor on each layer's MAC energy: the profile's pot_mac_rel on PoT layers, else 1."""
        if self.pot is None:
            return np.ones_like(self.macs)
        return 1.0 + self.pot * (profile.pot_mac_rel - 1.0)

    def __len__(self) -> int:
        return self.macs.shape[0]

    def take(self, index: Any) -> "NetArrays":
        idx = np.atleast_1d(np.asarray(index))
        return NetArrays(names=[self.names[i] for i in idx], macs=self.macs[idx], first=self.first[idx],
                         weights_and_biases=self.weights_and_biases[idx], activations=self.activations[idx],
                         out_values=self.out_values[idx], input_values=self.input_values[idx],
                         pot=None if self.pot is None else self.pot[idx])


def net_arrays(layer_lists: Sequence[Sequence[dict]]) -> NetArrays:
    """Counts of each network (layer dicts as from describe_topology or a .qjm header)."""
    layer_lists = [list(layers) for layers in layer_lists]
    stats = [network_stats(layers, None) for layers in layer_lists]
    if not stats:
        raise UserError("no networks to evaluate")
    width = max(len(s.layers) for s in stats)
    arrays = {k: np.zeros((len(stats), width)) for k in ("macs", "first", "weights_and_biases", "activations", "out_values")}
    for i, s in enumerate(stats):
        n = len(s.layers)
        arrays["macs"][i, :n] = [l.macs for l in s.layers]
        arrays["first"][i, 0] = 1.0
        arrays["weights_and_biases"][i, :n] = [l.weights_and_biases for l in s.layers]
        arrays["activations"][i, :n] = [l.activations for l in s.layers]
        arrays["out_values"][i, :n] = [l.out_values for l in s.layers]
    pot = np.zeros((len(stats), width))
    for i, layers in enumerate(layer_lists):
        pot[i, :len(layers)] = [float(layer.get("w_kind", "uniform") == "pot") for layer in layers]
    return NetArrays(names=[[l.name for l in s.layers] for s in stats],
                     input_values=np.array([s.total.input_values for s in stats], dtype=float),
                     pot=pot if pot.any() else None, **arrays)


def bits_of(q: int | None) -> int:
    """Bits per value: Q, or 32 for the float baseline."""
    return FLOAT_BITS if q is None else int(q)


def check_memory(memory_mb: Any) -> np.ndarray:
    memory = np.asarray(memory_mb, dtype=float)
    bad = memory[~(np.isfinite(memory) & (memory > 0))]
    if bad.size:
        raise UserError(f"memory size must be > 0 Mb, got {float(bad.flat[0])!r}")
    return memory


def evaluate(nets: NetArrays, bits: Any, memory_mb: Any, profile: Profile, per_layer: bool = False,
             act_memory_mb: Any = None) -> dict[str, np.ndarray]:
    """Energy terms for networks x bits x memory, broadcasting.

    `memory_mb` is the paper's M: M bits for weights and another M for activations. A real
    accelerator sizes them apart: `act_memory_mb` (broadcasting like `memory_mb`) then gives the
    activation memory, whose halves hold a layer's inputs and outputs.

    `bits` and `memory_mb` broadcast against the network axis: for a full grid pass
    `bits[None, :, None]` and `memory[None, None, :]` and the result has shape (N, Q, M). Per-layer
    arrays are indexed with a trailing layer axis internally. Returns the paper's terms (E_C, E_W,
    E_A, E_DRAM, E_HW, E_inf), the breakdown (compute, local, main, dram), the DRAM word counts,
    and with `per_layer` the per-layer arrays (shape (..., L)) of everything but w_s.
    """
    n = len(nets)
    bits = np.asarray(bits, dtype=float)
    memory = check_memory(memory_mb)
    act_memory = memory if act_memory_mb is None else check_memory(act_memory_mb)
    ndim = max(1, bits.ndim, memory.ndim, act_memory.ndim)
    shape = np.broadcast_shapes((n,) + (1,) * (ndim - 1), bits.shape, memory.shape, act_memory.shape)
    # Network arrays keep their first axis; the other inputs get a trailing layer axis.
    def per_net(a: np.ndarray) -> np.ndarray:          # (N, L) -> (N, 1.., L)
        return a.reshape((n,) + (1,) * (len(shape) - 1) + a.shape[1:])
    b, m, m_act = bits[..., None], memory[..., None], act_memory[..., None]

    passes = np.maximum(1.0, np.ceil(PIXEL_BITS / b))
    macs = per_net(nets.macs) * (1.0 + per_net(nets.first) * (passes - 1.0))
    acts, wb, outs = per_net(nets.activations), per_net(nets.weights_and_biases), per_net(nets.out_values)

    e_mac, e_l, e_m, e_d = profile.e_mac(b), profile.e_local(b), profile.e_main(b), profile.e_dram(b)
    reuse_w, reuse_a = profile.reuse_w(b), profile.reuse_a(b)

    # Idle lanes (utilization u < 1) cost e_idle per lane-cycle: N_c·(1/u − 1) of them. Both are
    # calibrated quantities; uncalibrated profiles have e_idle = 0, u = 1 (the paper's model).
    mac_scale = per_net(nets.mac_scale(profile))
    compute = e_mac * (macs * mac_scale + profile.post_ops * acts) + profile.e_idle(b) * macs * (1.0 / profile.utilization(b) - 1.0)
    local_w = e_l * macs / reuse_w
    local_a = e_l * macs / reuse_a
    main_w = e_m * wb
    main_a = 2.0 * e_m * acts

    half_words = np.floor(m_act * MB_BITS / 2.0 / b)
    fmap_overflow = np.maximum(0.0, outs - half_words)           # (..., L) f_s per layer
    weight_words = np.floor(m * MB_BITS / b)[..., 0]
    n_s = wb.sum(axis=-1)
    w_s = np.maximum(0.0, n_s - weight_words)
    f_s = fmap_overflow.sum(axis=-1)
    image_words = per_net(nets.input_values[:, None])[..., 0] * (PIXEL_BITS / bits)
    e_d0 = e_d[..., 0]
    dram_image, dram_fmap, dram_weights = e_d0 * image_words, e_d0 * 2.0 * f_s, e_d0 * w_s

    total = lambda a: np.broadcast_to(a.sum(axis=-1), shape)  # noqa: E731
    out = {
        "E_C": total(compute), "E_W": total(main_w + local_w), "E_A": total(main_a + local_a),
        "compute": total(compute), "local": total(local_w + local_a), "main": total(main_w + main_a),
        "dram_image": np.broadcast_to(dram_image, shape), "dram_fmap": np.broadcast_to(dram_fmap, shape),
        "dram_weights": np.broadcast_to(dram_weights, shape),
        "image_words": np.broadcast_to(image_words, shape), "f_s": np.broadcast_to(f_s, shape),
        "w_s": np.broadcast_to(w_s, shape),
    }
    out["dram"] = out["E_DRAM"] = out["dram_image"] + out["dram_fmap"] + out["dram_weights"]
    out["E_HW"] = out["E_C"] + out["E_W"] + out["E_A"]
    out["E_inf"] = out["E_HW"] + out["E_DRAM"]
    if per_layer:
        lshape = shape + (nets.macs.shape[1],)
        layer = lambda a: np.broadcast_to(a, lshape)  # noqa: E731
        out["layer"] = {"compute": layer(compute), "local": layer(local_w + local_a), "main": layer(main_w + main_a),
                        "dram_fmap": layer(e_d * 2.0 * fmap_overflow), "macs": layer(macs)}
    return out


def network_energy(layers: Sequence[dict], q: int | None, memory_mb: float, profile: Profile,
                   act_memory_mb: float | None = None) -> dict[str, Any]:
    """One network at one Q and memory size: totals, breakdown and per-layer terms as plain JSON."""
    nets = net_arrays([layers])
    r = evaluate(nets, np.array([bits_of(q)]), np.array([memory_mb]), profile, per_layer=True,
                 act_memory_mb=None if act_memory_mb is None else np.array([act_memory_mb]))
    scalar = {k: float(v[0]) for k, v in r.items() if k != "layer"}
    per_layer = [{"name": name, **{k: float(v[0, i]) for k, v in r["layer"].items()}}
                 for i, name in enumerate(nets.names[0])]
    return {"q": q, "memory_mb": float(memory_mb), "unit": profile.unit, **scalar, "layers": per_layer}


def mixed_network_energy(layers: Sequence[dict], memory_mb: float, profile: Profile,
                         act_memory_mb: float | None = None) -> dict[str, Any]:
    """One network with a Q per layer (layer dicts carrying q_in/q_w/q_out, as a .qjm header or
    qjoule.sw.mixed.layer_qs gives them): every per-layer term of `evaluate` at that layer's Q.

    A conv/dense layer is priced at its q_w (= its q_out), a max-pool at the Q of the codes it
    pools; the first layer runs ceil(8/Q) passes at its Q and the image's DRAM words use its
    f = 8/Q. Weight memory (M bits) is filled in layer order, each layer's weights at its width:
    the words that do not fit are re-fetched (at that layer's DRAM word energy). On a uniform
    network this equals `network_energy` term by term.
    """
    from .mixed import layer_bits

    layers = list(layers)
    nets = net_arrays([layers])
    b = np.array(layer_bits(layers), dtype=float)            # (L,)
    memory = float(check_memory(memory_mb))
    act_memory = memory if act_memory_mb is None else float(check_memory(act_memory_mb))
    passes = np.maximum(1.0, np.ceil(PIXEL_BITS / b))
    macs = nets.macs[0] * (1.0 + nets.first[0] * (passes - 1.0))
    acts, wb, outs = nets.activations[0], nets.weights_and_biases[0], nets.out_values[0]
    e_mac, e_l, e_m, e_d = profile.e_mac(b), profile.e_local(b), profile.e_main(b), profile.e_dram(b)
    compute = e_mac * (macs * nets.mac_scale(profile)[0] + profile.post_ops * acts) \
        + profile.e_idle(b) * macs * (1.0 / profile.utilization(b) - 1.0)
    local = e_l * macs / profile.reuse_w(b) + e_l * macs / profile.reuse_a(b)
    main_w, main_a = e_m * wb, 2.0 * e_m * acts
    fmap_overflow = np.maximum(0.0, outs - np.floor(act_memory * MB_BITS / 2.0 / b))
    free_bits, weight_overflow = memory * MB_BITS, np.zeros_like(wb)
    for i in range(len(wb)):                                # weight memory filled in layer order
        fit = min(wb[i], np.floor(free_bits / b[i]))
        weight_overflow[i] = wb[i] - fit
        free_bits -= fit * b[i]
    image_words = nets.input_values[0] * (PIXEL_BITS / b[0])
    out: dict[str, Any] = {
        "E_C": float(compute.sum()), "E_W": float((main_w + e_l * macs / profile.reuse_w(b)).sum()),
        "E_A": float((main_a + e_l * macs / profile.reuse_a(b)).sum()),
        "compute": float(compute.sum()), "local": float(local.sum()), "main": float((main_w + main_a).sum()),
        "dram_image": float(e_d[0] * image_words), "dram_fmap": float((e_d * 2.0 * fmap_overflow).sum()),
        "dram_weights": float((e_d * weight_overflow).sum()),
        "image_words": float(image_words), "f_s": float(fmap_overflow.sum()), "w_s": float(weight_overflow.sum()),
    }
    out["dram"] = out["E_DRAM"] = out["dram_image"] + out["dram_fmap"] + out["dram_weights"]
    out["E_HW"] = out["E_C"] + out["E_W"] + out["E_A"]
    out["E_inf"] = out["E_HW"] + out["E_DRAM"]
    per_layer = [{"name": name, "q": int(b[i]), "compute": float(compute[i]), "local": float(local[i]),
                  "main": float(main_w[i] + main_a[i]), "dram_fmap": float(e_d[i] * 2.0 * fmap_overflow[i]),
                  "macs": float(macs[i])} for i, name in enumerate(nets.names[0])]
    return {"q": [int(v) for v in b], "memory_mb": memory, "unit": profile.unit, **out, "layers": per_layer}
