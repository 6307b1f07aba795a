"""`qjoule generate`: the accelerator's Verilog (top module `qjoule_accel`) and accel.json."""

from __future__ import annotations

import argparse
import re
import sys

HELP = "generate the intQ accelerator: DIR/qjoule_accel.v and DIR/accel.json (config, derived values, ports)"

TOP = "qjoule_accel"
#: Config fields settable on the command line (flag name = field name with dashes).
FIELDS = ("rows", "cols", "datapath", "act_buffer_bits", "weight_buffer_bits", "max_channels", "max_height",
          "max_width", "max_dense_inputs", "max_classes", "pp_channels")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--q", type=int, default=None, help="bit-width Q of weights and activations (1..16)")
    p.add_argument("--variant", default=None, help="base config: default, tiny, ulx3s or icebreaker (default: default)")
    for field in FIELDS:
        p.add_argument(f"--{field.replace('_', '-')}", type=int, default=None, metavar="N", help=f"override {field}")
    p.add_argument("--weights", default=None, choices=("uniform", "pot"),
                   help="weight lanes: uniform Q-bit multiplies or power-of-two shift-and-accumulate (q 2..6); "
                        "default: the model's weight kind with --model, else uniform")
    p.add_argument("--config", default=None, metavar="FILE", help="accelerator config JSON (accel.json or a config file)")
    p.add_argument("--model", default=None, metavar="FILE", help="integer model (.qjm): size the buffers to fit it")
    p.add_argument("--out", required=True, metavar="DIR")


def build_config(args: argparse.Namespace):
    """The AccelConfig the arguments describe, and the model if one was given; UserError on bad input."""
    from qjoule.config import AccelConfig, variant
    from qjoule.errors import UserError
    from qjoule.io import read_json

    model = None
    if args.model is not None:
        from qjoule.sw import intmodel
        model = intmodel.load(args.model)
    overrides = {f: getattr(args, f) for f in FIELDS if getattr(args, f) is not None}
    weights = getattr(args, "weights", None)
    if weights is None and model is not None and args.config is None:
        # A model of power-of-two layers selects the shift-and-accumulate lanes (encode checks the rest).
        from qjoule.program import model_weights
        weights = model_weights(model)
    if weights is not None:
        overrides["weights"] = weights
    if args.config is not None:
        if args.variant is not None:
            raise UserError("--config and --variant are exclusive: the config file is the whole base")
        data = read_json(args.config, "config file")
        if isinstance(data, dict) and isinstance(data.get("config"), dict):  # an accel.json
            data = data["config"]
        cfg = AccelConfig.from_dict(data, source=f"config file {args.config!r}").replace(**overrides)
        if args.q is not None and args.q != cfg.q:
            raise UserError(f"--q {args.q} does not match the config file's q={cfg.q}")
    else:
        q = args.q if args.q is not None else (model.q if model is not None else None)
        if model is not None and model.q is None:
            # per-layer Qs: the modes the layers run at (program.layer_modes; --q: the first layer's)
            from qjoule.program import layer_modes
            modes = layer_modes(model, args.q)
            q = modes[0]
            overrides.setdefault("q_modes", tuple(sorted(set(modes))))
        if q is None:
            raise UserError("give --q (1..16), --config FILE or --model FILE")
        cfg = variant(args.variant or "default", q=q, **overrides)
    if model is not None:
        from qjoule.program import size_for_model
        keep = set(overrides) | ({"act_buffer_bits", "weight_buffer_bits"} if args.config is not None else set())
        cfg = size_for_model(model, cfg, keep=keep)
    return cfg, model


def port_list(verilog: str, top: str = TOP) -> list[dict]:
    """Ports of module `top` in declaration order: name, direction, width."""
    body = verilog.split(f"module {top}(", 1)[1].split("endmodule", 1)[0]
    ports = []
    for match in re.finditer(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s+)?([\\\w$]+)\s*;", body, re.M):
        direction, hi, lo, name = match.groups()
        width = int(hi) - int(lo) + 1 if hi is not None else 1
        ports.append({"name": name, "direction": direction, "width": width})
    return ports


def run(args: argparse.Namespace) -> int:
    from qjoule.gateware.top import QjouleAccel
    from qjoule.hw.verilog import emit_verilog
    from qjoule.io import staged_output, write_json
    from qjoule import program

    cfg, model = build_config(args)
    print(f"generating {TOP} for q={cfg.q} D={cfg.datapath} R={cfg.rows} C={cfg.cols} (p={cfg.parallelism}) ...",
          file=sys.stderr)
    verilog = emit_verilog(QjouleAccel(cfg), TOP)
    info = {
        "module": TOP,
        "config": cfg.to_dict(),
        "derived": {**cfg.derived(),
                    "bank_depth": program.bank_depth(cfg), "param_words": program.param_words(cfg),
                    "param_word_bits": program.param_word_bits(cfg),
                    "weight_word_bits": program.weight_word_bits(cfg),
                    "layer_words": program.layer_words(cfg), "max_layers": program.MAX_LAYERS,
                    "image_words": program.IMAGE_WORDS},
        "ports": port_list(verilog),
    }
    if model is not None:
        prog = program.encode(model, cfg)
        info["model"] = {"path": args.model, "layers": len(prog.layers), "setup_words": len(prog.setup_words),
                         "external_layers": [prog.layers[i].name for i in prog.external],
                         "weight_words_used": prog.weight_words_used, "output_words": prog.output_word_count()}
    key = {"config": cfg.to_dict(), "model": args.model}
    with staged_output(args.out, "generate", key) as stage:
        (stage / f"{TOP}.v").write_text(verilog)
        write_json(stage / "accel.json", info)
    print(f"{args.out}/{TOP}.v ({len(verilog.splitlines())} lines), {args.out}/accel.json")
    return 0
